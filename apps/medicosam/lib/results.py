"""Label files written the way the requesting client asked (``result_extension``, ``result_compress``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medicosam_app.volume import Volume, write_label


def _flag(value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def write_result(label: np.ndarray, volume: Volume, request: Mapping[str, Any]) -> Path:
    """Slicer asks for ``.nrrd`` (compressed); OHIF for ``.nrrd`` with ``result_compress: false``."""
    return write_label(
        label, volume, suffix=request.get("result_extension") or ".nii.gz",
        compress=_flag(request.get("result_compress")),
    )
