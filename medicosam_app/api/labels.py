"""Label tags and label info as requests carry them: the names labels are saved under, and what a label's
classes are called."""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Optional

from pydantic import BeforeValidator, ValidationInfo, model_validator

from ..errors import InvalidRequestError
from ..request_values import parse_int, parse_text, shortened_repr
from ..security.paths import safe_name
from .fields import RequestModel
from .limits import check_json_values, require_small_json

ORIGINAL_TAG = "original"  # MONAI Label's tag for a model's draft
FINAL_TAG = "final"  # MONAI Label's tag for an annotator's finished label
MAX_LABELS = 1024  # label_info entries: more classes than any segmentation has


def read_label_tag(value: Any, key: str = "label_tag") -> str:
    """A label tag: text, and a plain name (it becomes a folder of the datastore)."""
    return safe_name(parse_text(value, key), "The label tag")


def read_draft_tag(value: Any, key: str = "label_tag") -> str:
    """The tag an inference result is saved under: a plain name, ``original`` by default, never ``final`` (the
    annotator's finished label, which a click's one-slice mask must not replace)."""
    tag = read_label_tag(ORIGINAL_TAG if value is None else value, key)
    if tag == FINAL_TAG:
        raise InvalidRequestError(
            "Inference results are drafts and are never saved as the 'final' label (an annotator's finished "
            "label): leave out save_label, or save under another label_tag such as 'original'; submit a final "
            "label with PUT /datastore/label."
        )
    return tag


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
