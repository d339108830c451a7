"""Simulated prompts for training, as micro-sam trains SAM: a jittered box or a random inside point to
open, then corrections from the current prediction's errors."""

from __future__ import annotations

import numpy as np

from ..evaluation.clicks import Click, mask_box


def jittered_box(mask: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """The object's box with each side moved by up to ``jitter`` × the box's size (annotators never drag a
    tight box), clipped to the image and at least one pixel wide and high."""
    x0, y0, x1, y1 = mask_box(mask)
    width, height = x1 - x0, y1 - y0
    shifts = rng.uniform(-jitter, jitter, size=4) * np.array([width, height, width, height])
    rows, cols = mask.shape
    x0, x1 = np.clip([x0 + shifts[0], x1 + shifts[2]], 0, cols)
    y0, y1 = np.clip([y0 + shifts[1], y1 + shifts[3]], 0, rows)
    if x1 - x0 < 1:
        x0, x1 = max(min(x0, cols - 1), 0), min(max(x0, 0) + 1, cols)
    if y1 - y0 < 1:
        y0, y1 = max(min(y0, rows - 1), 0), min(max(y0, 0) + 1, rows)
    return np.array([x0, y0, x1, y1], dtype=float)


def random_inside(mask: np.ndarray, rng: np.random.Generator) -> Click:
    """A positive click on a uniformly drawn pixel of the object."""
    rows, cols = np.nonzero(mask)
    pick = int(rng.integers(len(rows)))
    return Click(int(cols[pick]), int(rows[pick]), True)
