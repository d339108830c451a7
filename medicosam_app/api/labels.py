"""Label tags and label info as requests carry them: the names labels are saved under, and what a label's
classes are called."""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Optional

from pydantic import BeforeValidator, ValidationInfo, model_validator

from ..errors import InvalidRequestError
from ..request_values import parse_int, parse_text, shortened_repr
from .fields import RequestModel
from .limits import check_json_values, require_small_json
from .tags import read_label_tag

MAX_LABELS = 1024  # label_info entries: more classes than any segmentation has


def read_label_info(value: Any, key: str = "label_info") -> Optional[List[Dict[str, Any]]]:
    """``label_info`` as Slicer sends it: ``[{"name": "liver", "idx": 1}, ...]`` (other keys are kept)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'{key}' must be a list such as [{{\"name\": \"liver\", \"idx\": 1}}], got {shortened_repr(value)}."
        )
    if len(value) > MAX_LABELS:
        raise InvalidRequestError(f"'{key}' lists {len(value)} labels; at most {MAX_LABELS} are accepted.", status=413)
    require_small_json(value, f"'{key}'")
    check_json_values(value, key)
    for n, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise InvalidRequestError(
                f"'{key}[{n}]' must be an object {{\"name\": ..., \"idx\": ...}}, got {shortened_repr(entry)}."
            )
        if "name" in entry:
            parse_text(entry["name"], f"{key}[{n}].name")
        if "idx" in entry:
            parse_int(entry["idx"], f"{key}[{n}].idx", minimum=0, maximum=65535)
    return value


def _by_key(reader: Any) -> BeforeValidator:
    return BeforeValidator(lambda value, info: reader(value, info.field_name))


def _label_info(value: Any, info: ValidationInfo) -> Any:
    return read_label_info(value, info.field_name)


LabelTag = Annotated[str, _by_key(read_label_tag)]
LabelInfo = Annotated[Optional[List[Dict[str, Any]]], BeforeValidator(_label_info)]


class LabelSaveParams(RequestModel):
    """The ``params`` of ``PUT /datastore/label``: kept with the label in the datastore, so bounded like any stored
    text; its ``label_info`` names the label's classes."""

    label_info: LabelInfo = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, values: Any) -> Any:
        require_small_json(values, "The label's params")
        return values
