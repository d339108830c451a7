"""Label files written the way the requesting client asked (``result_extension``, ``result_compress``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medicosam_app.request_values import parse_bool
from medicosam_app.geometry.volume import Volume, write_label


@dataclass(frozen=True)
class ResultFormat:
    """How the answer's label file is written. Read before the work starts, so a malformed option is a 422
    at once rather than after a long inference."""

    suffix: str = ".nii.gz"
    compress: bool = True

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> "ResultFormat":
        """Slicer asks for ``.nrrd`` (compressed); OHIF for ``.nrrd`` with ``result_compress: false``.
        An unknown extension falls back to ``.nii.gz`` in :func:`write_label`, as MONAI Label's tasks do."""
        suffix = request.get("result_extension")
        return cls(
            suffix=suffix if isinstance(suffix, str) and suffix else ".nii.gz",
            compress=parse_bool(request.get("result_compress"), "result_compress", default=True),
        )


def write_result(label: np.ndarray, volume: Volume, result_format: ResultFormat) -> Path:
    return write_label(label, volume, suffix=result_format.suffix, compress=result_format.compress)
