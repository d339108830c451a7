"""What an inference puts on its audit line: the prompts, the model and a summary of the mask returned."""

from __future__ import annotations

from typing import Optional

import numpy as np

from medicosam_app.api import InferenceFields
from medicosam_app.security.audit_record import label_summary

from ..access.request_context import add_audit_details


def audit_inference(
    task: str,
    asked: InferenceFields,
    label: np.ndarray,
    axis: int = 2,
    checkpoint_xxh128: Optional[str] = None,
    semantic_version: Optional[str] = None,
    slice_index: Optional[int] = None,
    interactive_version: Optional[str] = None,
) -> None:
    """Adds the request's details to its audit line. For a click only the clicked slice is summarised
    (hash and count of that slice's mask; the rest of the volume is empty by construction), so the record
    costs microseconds, not a pass over a whole CT."""
    if slice_index is not None:
        selector = [slice(None)] * label.ndim
        selector[axis] = slice_index
        # Basic indexing is a view; np.take copied through the whole Fortran-ordered volume (12 ms a click).
        summary = label_summary(label[tuple(selector)], axis=0)
        summary["slice_range"] = [slice_index, slice_index] if summary["voxels"] else None
    else:
        summary = label_summary(label, axis=axis)
    model = {"checkpoint_xxh128": checkpoint_xxh128, "semantic_version": semantic_version,
             "interactive_version": interactive_version}
    add_audit_details(
        task=task,
        image=asked.image,
        prompts=asked.audit_summary() or None,
        model={key: value for key, value in model.items() if value is not None} or None,
        result=summary,
        user=asked.client_id,
    )
