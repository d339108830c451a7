"""Where the objects are, before MedicoSAM draws them: a box on every slice an object covers.

Two proposers: the served semantic decoder (each class's 3D connected components) and boxes a request
gives (an external detector, a CSV of findings). Either way a proposal names its class, its boxes in
display-orientation pixels per slice, the slice to draw first, and a score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..errors import InvalidRequestError
from ..geometry.coordinates import SliceView
from ..interactive.prompts import VoxelBox, box_within

@dataclass
class Proposal:
    """One object to draw: a pixel box ``(x0, y0, x1, y1)`` per slice, the slice to start from, a score."""

    class_name: str
    class_value: int
    boxes: Dict[int, np.ndarray]
    anchor: int
    score: float = 1.0
    clip_to_boxes: bool = False  # the drawn mask may not leave the box (given boxes bound their instance)
    seed_masks: Dict[int, np.ndarray] = field(default_factory=dict)  # the proposer's own mask per slice

    @property
    def slice_range(self) -> Tuple[int, int]:
        return min(self.boxes), max(self.boxes)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The pixel box ``(x0, y0, x1, y1)`` (inclusive) around a non-empty 2D mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=float)


def semantic_proposals(
    label: np.ndarray,
    names: Sequence[str],
    values: Sequence[int],
    view: SliceView,
    confidence: Optional[np.ndarray] = None,
    min_voxels: int = 10,
) -> List[Proposal]:
    """Each class's 3D connected components (26-connected) of at least ``min_voxels`` voxels, best score first.

    ``label`` holds the semantic label values ``[i, j, k]``; ``confidence`` (same shape, 0..1) the decoder's
    probability of the class it chose, whose mean over a component is the proposal's score.
    """
    proposals: List[Proposal] = []
    structure = np.ones((3, 3, 3), dtype=bool)
    for name, value in zip(names, values):
        components, count = ndimage.label(label == value, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        scores = None
        if confidence is not None:
            scores = ndimage.mean(confidence, components, index=np.arange(1, count + 1))
        for number, extent in enumerate(ndimage.find_objects(components), start=1):
            if extent is None or sizes[number] < min_voxels:
                continue
            boxes: Dict[int, np.ndarray] = {}
            seeds: Dict[int, np.ndarray] = {}
            low, high = extent[view.axis].start, extent[view.axis].stop - 1
            for index in range(low, high + 1):
                pixels = view.extract(components, index) == number
                if pixels.any():
                    boxes[index] = mask_box(pixels)
                    seeds[index] = pixels
            anchor = max(seeds, key=lambda i: int(seeds[i].sum()))
            score = float(scores[number - 1]) if scores is not None else 1.0
            proposals.append(Proposal(name, int(value), boxes, anchor, score, seed_masks=seeds))
    proposals.sort(key=lambda p: -p.score)
    return proposals


@dataclass(frozen=True)
class RequestedBox:
    """One box a request gives: voxel bounds ``(lo, hi)`` per axis (ordered, not yet checked against the image), the
    class it names (None: the request's default class) and its detector score."""

    box: VoxelBox
    class_name: Optional[str] = None
    score: float = 1.0


def box_proposals(
    requested: Sequence[RequestedBox], shape: Sequence[int], view: SliceView, default_class: str = "object"
) -> List[Proposal]:
    """One proposal per requested box, clipped to the image; each is drawn only within its own box."""
    if not requested:
        raise InvalidRequestError("'boxes' must be a non-empty list of voxel boxes [[i0, i1, j0, j1, k0, k1], ...].")
    proposals = []
    for n, item in enumerate(requested):
        key = f"boxes[{n}]"
        roi = box_within(item.box, shape, key)
        pixel_box = roi_pixel_box(roi, view, key)
        low, high = roi[view.axis]
        boxes = {index: pixel_box.copy() for index in range(low, high + 1)}
        class_name = item.class_name or default_class
        proposals.append(Proposal(class_name, 0, boxes, (low + high) // 2, item.score, clip_to_boxes=True))
    return proposals


def roi_pixel_box(roi: Tuple[Tuple[int, int], ...], view: SliceView, key: str = "roi") -> np.ndarray:
    """A voxel box's in-plane extent as a pixel box ``(x0, y0, x1, y1)`` on its slices."""
    corner_a = [b[0] for b in roi]
    corner_b = [b[1] for b in roi]
    (xa, ya), (xb, yb) = view.voxel_to_xy(corner_a), view.voxel_to_xy(corner_b)
    if xa == xb or ya == yb:
        raise InvalidRequestError(f"'{key}' {[list(b) for b in roi]} is flat in the slice plane: give it a width and a height.")
    return np.array([min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)], dtype=float)
