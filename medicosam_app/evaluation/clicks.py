"""Where a simulated annotator puts its prompts: the first one, and each correction after a prediction.

Two correction rules:

- ``medicosam`` (micro-sam's ``IterativePromptGenerator``, which MedicoSAM was trained and evaluated with):
  each round one positive point drawn uniformly from the false negatives (from the correct foreground
  when nothing is missed) and one negative point from the false positives (when there are none: from a
  3-pixel ring of the object's box outside the object, else anywhere outside it), from a seeded generator.
- ``cvpr25`` (the CVPR 2025 interactive 3D segmentation challenge): one click per round at the pixel
  farthest inside the largest error component (the image border counts as outside), foreground when
  the truth is foreground there.

All points are ``(x, y) = (column, row)`` pixel centres of the display-orientation slice, as the predictor
takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol, Tuple

import numpy as np
from scipy import ndimage

PROTOCOLS = ("medicosam", "cvpr25")
STARTS = ("box", "point")
NEGATIVE_RING = 3  # pixels around the object's box where micro-sam looks for a negative when nothing is wrong


@dataclass(frozen=True)
class Click:
    x: int  # column
    y: int  # row
    positive: bool


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The box around a 2D mask as SAM boxes are given, ``[x0, y0, x1, y1]`` with exclusive ends (as in
    micro-sam and the datasets SAM learnt from: a one-pixel object has a one-pixel-wide box)."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=float)


def deepest_pixel(mask: np.ndarray) -> Tuple[int, int]:
    """(row, col) of the pixel farthest from the mask's outside, the image border counting as outside;
    ties go to the first in raster order, so the answer never depends on chance."""
    padded = np.pad(mask, 1, constant_values=False)
    depth = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(row), int(col)


def first_click(truth: np.ndarray) -> Click:
    """The opening point prompt: the object's most interior pixel (never outside a concave object, unlike
    its centroid)."""
    row, col = deepest_pixel(truth)
    return Click(col, row, True)


class CorrectionRule(Protocol):
    """Places the clicks of one correction round from the truth and the current prediction."""

    name: str
    clicks_per_round: int

    def __call__(self, truth: np.ndarray, prediction: np.ndarray, rng: np.random.Generator) -> List[Click]: ...


def _draw(region: np.ndarray, rng: np.random.Generator) -> Tuple[int, int]:
    rows, cols = np.nonzero(region)  # raster order: the same generator state always picks the same pixel
    pick = int(rng.integers(len(rows)))
    return int(rows[pick]), int(cols[pick])


def box_ring(truth: np.ndarray, ring: int = NEGATIVE_RING) -> np.ndarray:
    """The object's box grown by ``ring`` pixels (clipped to the image), minus the object."""
    rows, cols = np.nonzero(truth)
    region = np.zeros_like(truth, dtype=bool)
    region[max(rows.min() - ring, 0) : rows.max() + 1 + ring, max(cols.min() - ring, 0) : cols.max() + 1 + ring] = True
    return region & ~truth


class RandomErrorClicks:
    """micro-sam's rule: one positive point from the false negatives, one negative from the false positives."""

    name = "medicosam"
    clicks_per_round = 2

    def __call__(self, truth: np.ndarray, prediction: np.ndarray, rng: np.random.Generator) -> List[Click]:
        missed = truth & ~prediction
        positive_region = missed if missed.any() else truth & prediction
        extra = prediction & ~truth
        if extra.any():
            negative_region = extra
        else:
            negative_region = box_ring(truth)
            if not negative_region.any():
                negative_region = ~truth
        clicks = []
        for region, positive in ((positive_region, True), (negative_region, False)):
            if region.any():
                row, col = _draw(region, rng)
                clicks.append(Click(col, row, positive))
        return clicks


class LargestErrorCentre:
    """The CVPR 2025 challenge's rule: one click at the centre of the largest error region."""

    name = "cvpr25"
    clicks_per_round = 1

    def __call__(self, truth: np.ndarray, prediction: np.ndarray, rng: Optional[np.random.Generator] = None) -> List[Click]:
        error = truth ^ prediction
        if not error.any():
            return []
        labelled, count = ndimage.label(error, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labelled.ravel(), minlength=count + 1)
        sizes[0] = 0
        largest = labelled == int(np.argmax(sizes))  # ties: the lowest label, first in raster order
        row, col = deepest_pixel(largest)
        return [Click(col, row, bool(truth[row, col]))]


def correction_rule(protocol: str) -> CorrectionRule:
    if protocol == "medicosam":
        return RandomErrorClicks()
    if protocol == "cvpr25":
        return LargestErrorCentre()
    raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
