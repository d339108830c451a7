"""Scanner intensities → the uint8 RGB image SAM expects, as the MedicoSAM authors prepared theirs.

Default (``volume``): min–max scale the whole volume to uint8, then min–max each slice, grey replicated to
three channels — medico-sam's 3D evaluation followed by micro-sam's per-slice normalisation. ``slice``
skips the volume step, ``percentile`` clips to the volume's 1st–99th percentile first (v2 training), and
``window`` applies a CT window (level/width in HU): a deviation from the authors, offered as an option.

Colour stays colour (``[..., 3]`` values): each channel is scaled on its own, over the volume (or clip) and
then over the slice, as micro-sam's current ``util._to_image`` scales each channel of a 2D image, uint8 RGB
included (its first releases passed uint8 through unchanged); a 2D grey image is its
own volume, so ``volume`` and ``slice`` agree there. A CT window means nothing for colour and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Tuple, Union

import numpy as np

from ..errors import InvalidRequestError

IntensityMode = Literal["volume", "slice", "percentile", "window"]
INTENSITY_MODES = ("volume", "slice", "percentile", "window")
PREPROCESSING_VERSION = "1"  # bump when the image SAM sees changes, so cached embeddings are not reused
Bound = Union[float, np.ndarray]  # one number for grey, one per channel for colour


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

    def volume_range(self, volume: np.ndarray) -> Optional[Tuple[Bound, Bound]]:
        """The (low, high) intensities mapped to 0 and 255 for the whole volume, or None for per-slice only;
        for a colour volume ``[i, j, k, channel]`` one low and one high per channel."""
        if volume.ndim == 4:
            return self._colour_range(volume)
        if self.mode == "volume":
            return float(np.min(volume)), float(np.max(volume))
        if self.mode == "percentile":
            low, high = np.percentile(volume, [1.0, 99.0])
            return float(low), float(high)
        if self.mode == "window":
            return self.window_level - self.window_width / 2, self.window_level + self.window_width / 2
        return None


    def _colour_range(self, volume: np.ndarray) -> Optional[Tuple[Bound, Bound]]:
        if self.mode == "window":
            raise InvalidRequestError(
                "The image is in colour, and a CT window (intensity 'window') applies to greyscale values only: "
                "start the server with --conf intensity volume (the default) to segment colour images.")
        if self.mode == "volume":
            flat = volume.reshape(-1, volume.shape[-1])
            return flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
        if self.mode == "percentile":
            low, high = np.percentile(volume.reshape(-1, volume.shape[-1]), [1.0, 99.0], axis=0)
            return low, high
        return None


def rescale_to_uint8(values: np.ndarray, low: Bound, high: Bound) -> np.ndarray:
    """Linear map of [low, high] to [0, 255], clipped; a constant image (or channel) becomes zeros. ``low`` and
    ``high`` may hold one value per channel of ``values[..., channel]``."""
    values = np.asarray(values, dtype=np.float32)
    if np.ndim(low) or np.ndim(high):
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        span = high - low
        scale = np.where(span > 0, 255.0 / np.where(span > 0, span, 1), 0).astype(np.float32)
        return np.round((np.clip(values, low, np.maximum(high, low)) - low) * scale).astype(np.uint8)
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) * (255.0 / (high - low))
    return np.round(scaled).astype(np.uint8)


def slice_to_rgb(pixels: np.ndarray, volume_range: Optional[Tuple[Bound, Bound]]) -> np.ndarray:
    """One display-orientation slice (H×W grey or H×W×3 colour) → H×W×3 uint8, given the volume-level range
    from the policy."""
    if pixels.ndim == 3:
        if volume_range is not None:
            pixels = rescale_to_uint8(pixels, *volume_range)
        flat = pixels.reshape(-1, pixels.shape[-1])
        return rescale_to_uint8(pixels, flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64))
    if volume_range is not None:
        pixels = rescale_to_uint8(pixels, *volume_range)
    grey = rescale_to_uint8(pixels, float(np.min(pixels)), float(np.max(pixels)))
    return np.repeat(grey[:, :, None], 3, axis=2)
