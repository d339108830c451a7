"""``POST /batch/infer/{model}``: a model that needs no prompts, run over many images."""

from __future__ import annotations

import re
from typing import Annotated, Any, List, Optional, Union

from pydantic import BeforeValidator, model_validator

from ..errors import InvalidRequestError
from ..request_values import parse_text, shortened_repr
from .fields import Flag, Integer, RequestModel
from .limits import check_body
from .tags import read_draft_tag

IMAGE_SETS = ("all", "labeled", "unlabeled")
_GPUS = re.compile(r"all|\d+(,\d+)*")


def _images(value: Any) -> Union[str, List[str]]:
    value = getattr(value, "value", value)  # MONAI Label's enum, when it parsed the query itself
    if isinstance(value, list):
        return [parse_text(image, f"images[{position}]") for position, image in enumerate(value)]
    if value in IMAGE_SETS:
        return value
    raise InvalidRequestError(
        f"'images' must be one of {', '.join(IMAGE_SETS)} or a list of image ids, got {shortened_repr(value)}."
    )


def _gpus(value: Any) -> str:
    if isinstance(value, str) and _GPUS.fullmatch(value.strip()):
        return value.strip()
    raise InvalidRequestError(f"'gpus' must be \"all\" or GPU numbers such as \"0,1\", got {shortened_repr(value)}.")


class BatchInferRequest(RequestModel):
    """A batch inference's options: results saved as drafts (``label_tag``, never ``final``), which images (a set
    name or image ids, checked against the datastore by the app), and how MONAI Label spreads the work."""

    label_tag: Annotated[str, BeforeValidator(lambda value: read_draft_tag(value))] = "original"
    images: Optional[Annotated[Union[str, List[str]], BeforeValidator(_images)]] = None
    max_workers: Optional[Integer(0, 1_000_000)] = None
    max_batch_size: Optional[Integer(0, 1_000_000)] = None
    multi_gpu: Optional[Flag] = None
    save_label: Optional[Flag] = None
    gpus: Optional[Annotated[str, BeforeValidator(_gpus)]] = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, values: Any) -> Any:
        check_body(values, cls.model_fields, "The batch inference request's body")
        return values
