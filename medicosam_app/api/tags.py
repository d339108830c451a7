"""Label tags as requests name them: the folders of the datastore labels are saved under."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError
from ..request_values import parse_text
from ..security.paths import safe_name

ORIGINAL_TAG = "original"  # MONAI Label's tag for a model's draft
FINAL_TAG = "final"  # MONAI Label's tag for an annotator's finished label


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
