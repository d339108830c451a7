"""``POST /activelearning/{strategy}``: which image to annotate next."""

from __future__ import annotations

from typing import Annotated, Any, List, Optional

from pydantic import BeforeValidator, model_validator

from ..errors import InvalidRequestError
from ..request_values import parse_text, shortened_repr
from .fields import OptionalText, RequestModel
from .labels import LabelTag
from .limits import check_body


def _label_names(value: Any) -> List[str]:
    if not isinstance(value, list):
        raise InvalidRequestError(f"'labels' must be a list of label names, got {shortened_repr(value)}.")
    return [parse_text(name, f"labels[{position}]") for position, name in enumerate(value)]


class NextSampleRequest(RequestModel):
    """The body Slicer and OHIF send for the next sample. MONAI Label stores its ``client_id`` in the chosen image's
    info in the datastore index and logs the whole body, so the body is bounded like an inference's ``params``."""

    strategy: OptionalText() = None  # another strategy than the route's, which is then the one used
    client_id: OptionalText() = None
    label_tag: Optional[LabelTag] = None
    labels: Optional[Annotated[List[str], BeforeValidator(_label_names)]] = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, values: Any) -> Any:
        check_body(values, cls.model_fields, "The next-sample request's body")
        return values
