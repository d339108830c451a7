"""Scanner intensities → the uint8 RGB image SAM expects, as the MedicoSAM authors prepared theirs.

Default (``volume``): min–max scale the whole volume to uint8, then min–max each slice, grey replicated to
three channels — medico-sam's 3D evaluation followed by micro-sam's per-slice normalisation. ``slice``
skips the volume step, ``percentile`` clips to the volume's 1st–99th percentile first (v2 training), and
``window`` applies a CT window (level/width in HU): a deviation from the authors, offered as an option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import numpy as np

IntensityMode = Literal["volume", "slice", "percentile", "window"]
INTENSITY_MODES = ("volume", "slice", "percentile", "window")
PREPROCESSING_VERSION = "1"  # bump when the image SAM sees changes, so cached embeddings are not reused


@dataclass(frozen=True)
class IntensityPolicy:
    """How to map intensities of one volume to uint8."""

    mode: IntensityMode = "volume"
    window_level: float = 40.0
    window_width: float = 400.0

    def __post_init__(self) -> None:
        if self.mode not in INTENSITY_MODES:
            raise ValueError(f"intensity mode must be one of {INTENSITY_MODES}, not {self.mode!r}")
        if self.mode == "window" and not self.window_width > 0:
            raise ValueError("window width must be positive")

    @property
    def key(self) -> str:
        """Identifies the policy in cache keys."""
        extra = f":{self.window_level}:{self.window_width}" if self.mode == "window" else ""
        return f"v{PREPROCESSING_VERSION}:{self.mode}{extra}"

    def volume_range(self, volume: np.ndarray) -> Optional[Tuple[float, float]]:
        """The (low, high) intensities mapped to 0 and 255 for the whole volume, or None for per-slice only."""
        if self.mode == "volume":
            return float(np.min(volume)), float(np.max(volume))
        if self.mode == "percentile":
            low, high = np.percentile(volume, [1.0, 99.0])
            return float(low), float(high)
        if self.mode == "window":
            return self.window_level - self.window_width / 2, self.window_level + self.window_width / 2
        return None


def rescale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map of [low, high] to [0, 255], clipped; a constant image becomes zeros."""
    values = np.asarray(values, dtype=np.float32)
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) * (255.0 / (high - low))
    return np.round(scaled).astype(np.uint8)


def slice_to_rgb(pixels: np.ndarray, volume_range: Optional[Tuple[float, float]]) -> np.ndarray:
    """One display-orientation slice → HxWx3 uint8, given the volume-level range from the policy."""
    if volume_range is not None:
        pixels = rescale_to_uint8(pixels, *volume_range)
    grey = rescale_to_uint8(pixels, float(np.min(pixels)), float(np.max(pixels)))
    return np.repeat(grey[:, :, None], 3, axis=2)
