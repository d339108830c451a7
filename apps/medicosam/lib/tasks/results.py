"""Label files written the way the requesting client asked (``result_extension``, ``result_compress``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medicosam_app.api import InferenceFields
from medicosam_app.geometry.volume import Volume, write_label


def write_result(label: np.ndarray, volume: Volume, asked: InferenceFields) -> Path:
    """``label`` (on ``volume``'s grid) written as the request asked, to a temporary file MONAI Label sends."""
    return write_label(label, volume, suffix=asked.result_suffix, compress=asked.result_compress)
