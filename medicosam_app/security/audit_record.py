"""What one line of the audit trail says: who, when, which endpoint and image, the prompts and the label in
summary (never the image itself), and how it ended."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Union




def utc_now_iso() -> str:
    """Now, as the audit trail writes times: ISO-8601 UTC with microseconds and ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class AuditRecord:
    """The fields of one audit line (ISSUE 12). Unset (None) fields are left out of the line.

    user: the signed-in user, or the client's ``client_id`` when authentication is off.
    endpoint: ``"<METHOD> <path>"``, e.g. ``"PUT /datastore/label"``.
    prompts: ``{"foreground", "background", "box", "slice", "axis", "label"}`` as sent (the request models'
        ``audit_summary`` in :mod:`medicosam_app.api`).
    model: ``{"checkpoint_xxh128", "semantic_version"}``.
    result: ``{"label_hash", "voxels", "slice_range"}`` (:func:`label_summary`).
    status: the HTTP status answered (or a word such as ``"ok"`` for work outside a request).
    detail: why a request was refused or failed.
    """

    event: str
    endpoint: str
    status: Union[int, str]
    user: Optional[str] = None
    role: Optional[str] = None
    task: Optional[str] = None
    image: Optional[str] = None
    prompts: Optional[Dict[str, Any]] = None
    model: Optional[Dict[str, Any]] = None
    result: Optional[Dict[str, Any]] = None
    latency_s: Optional[float] = None
    detail: Optional[str] = None
    time: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def label_summary(label: Any, axis: int = 2) -> Dict[str, Any]:
    """What a label volume holds, for the record: ``label_hash`` (xxh128 of shape, dtype and voxels),
    ``voxels`` (non-zero count) and ``slice_range`` ([first, last] non-empty slice along ``axis``, or None)."""
    import numpy as np
    import xxhash

    array = np.ascontiguousarray(label)
    digest = xxhash.xxh128()
    digest.update(f"{array.shape}|{array.dtype.str}|".encode("ascii"))
    digest.update(array.tobytes())
    filled = array != 0
    slice_range = None
    if filled.any() and array.ndim > axis:
        other_axes = tuple(i for i in range(array.ndim) if i != axis)
        occupied = np.flatnonzero(filled.any(axis=other_axes))
        slice_range = [int(occupied[0]), int(occupied[-1])]
    return {"label_hash": digest.hexdigest(), "voxels": int(filled.sum()), "slice_range": slice_range}


def json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths, sets: whatever a caller puts in prompts or results still lands.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
