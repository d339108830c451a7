"""Prompts in voxel indices → checked against the image → one slice's SAM prompt in pixels.

The request layer (:mod:`medicosam_app.api`) reads what clients send into :class:`VoxelPrompts`: 3D Slicer's
``foreground`` / ``background`` voxel indices ``[i, j, k]``, its ``roi`` ``[i0, i1, j0, j1, k0, k1]`` and the
current ``slice``; OHIF's points of the last clicked slice and no ``slice``. Here they meet the image: points
must lie inside it, the box is clipped to it, and every refusal says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidRequestError
from ..geometry.coordinates import SliceView

Voxel = Tuple[int, int, int]
VoxelBox = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]  # (lo, hi) per axis i, j, k, inclusive


@dataclass(frozen=True)
class VoxelPrompts:
    """Validated prompts in voxel indices of the image."""

    foreground: Tuple[Voxel, ...] = ()
    background: Tuple[Voxel, ...] = ()
    roi: Optional[VoxelBox] = None  # (lo, hi) per axis, inclusive
    slice_index: Optional[int] = None

    @property
    def points(self) -> Tuple[Voxel, ...]:
        return self.foreground + self.background


@dataclass(frozen=True)
class SlicePrompt:
    """SAM prompts for one slice, in that slice's display-orientation pixel frame."""

    points_xy: np.ndarray  # (N, 2) float, (x, y) = (col, row)
    point_labels: np.ndarray  # (N,) int, 1 foreground / 0 background
    box_xyxy: Optional[np.ndarray]  # (4,) float or None


def voxel_within(voxel: Voxel, shape: Sequence[int], key: str) -> Voxel:
    """``voxel`` when it lies inside an image of ``shape``; else a 422 that says where the image ends."""
    if not all(0 <= v < n for v, n in zip(voxel, shape)):
        raise InvalidRequestError(
            f"'{key}' {list(voxel)} lies outside the image, whose voxel indices run from [0, 0, 0] to "
            f"{[n - 1 for n in shape]}. Click inside the image."
        )
    return voxel


def box_within(box: VoxelBox, shape: Sequence[int], key: str = "roi") -> VoxelBox:
    """``box`` clipped to an image of ``shape``; a box wholly outside the image on some axis is a 422."""
    bounds = []
    for axis, (lo, hi) in enumerate(box):
        if hi < 0 or lo >= shape[axis]:
            raise InvalidRequestError(
                f"'{key}' {[v for pair in box for v in pair]} lies outside the image on axis {'ijk'[axis]} "
                f"(0..{shape[axis] - 1}). Draw the box inside the image."
            )
        bounds.append((max(lo, 0), min(hi, shape[axis] - 1)))
    return tuple(bounds)  # type: ignore[return-value]


def prompts_within(prompts: VoxelPrompts, shape: Sequence[int]) -> VoxelPrompts:
    """``prompts`` checked against an image of ``shape``: every point inside, the box clipped to it. The slice is
    checked against the slicing axis in :func:`choose_slice`."""
    return VoxelPrompts(
        foreground=tuple(voxel_within(p, shape, f"foreground[{n}]") for n, p in enumerate(prompts.foreground)),
        background=tuple(voxel_within(p, shape, f"background[{n}]") for n, p in enumerate(prompts.background)),
        roi=None if prompts.roi is None else box_within(prompts.roi, shape),
        slice_index=prompts.slice_index,
    )


def choose_slice(prompts: VoxelPrompts, view: SliceView) -> int:
    """The slice to segment: the client's ``slice``, else the last clicked point's, else the ROI's middle."""
    if prompts.slice_index is not None:
        index = prompts.slice_index
        if not 0 <= index < view.num_slices:
            raise InvalidRequestError(
                f"'slice' {index} is outside the image: slices along axis {'ijk'[view.axis]} run 0..{view.num_slices - 1}."
            )
        return index
    if prompts.foreground:
        return view.slice_of(prompts.foreground[-1])
    if prompts.background:
        return view.slice_of(prompts.background[-1])
    if prompts.roi is not None:
        lo, hi = prompts.roi[view.axis]
        return (lo + hi) // 2
    raise InvalidRequestError("No prompt: send at least one 'foreground' point or an 'roi' box.")


def background_points(prompts: VoxelPrompts, view: SliceView, index: int) -> SlicePrompt:
    """The background points on slice ``index`` alone, in that slice's pixels (no box): a 3D correction."""
    xy = np.array([view.voxel_to_xy(p) for p in prompts.background if view.slice_of(p) == index], dtype=float)
    return SlicePrompt(points_xy=xy.reshape(-1, 2), point_labels=np.zeros(len(xy), dtype=int), box_xyxy=None)


def slice_prompt(prompts: VoxelPrompts, view: SliceView, index: int) -> SlicePrompt:
    """The points on slice ``index`` and the ROI's in-plane box, converted to that slice's pixels."""
    on_slice: List[Tuple[Voxel, int]] = [(p, 1) for p in prompts.foreground if view.slice_of(p) == index]
    on_slice += [(p, 0) for p in prompts.background if view.slice_of(p) == index]
    xy = np.array([view.voxel_to_xy(p) for p, _ in on_slice], dtype=float).reshape(-1, 2)
    labels = np.array([label for _, label in on_slice], dtype=int)

    box = None
    if prompts.roi is not None:
        lo, hi = prompts.roi[view.axis]
        if not lo <= index <= hi:
            raise InvalidRequestError(
                f"The ROI covers slices {lo}..{hi} along axis {'ijk'[view.axis]} but slice {index} was asked for: "
                "place the ROI on the slice you are segmenting."
            )
        corner_a = [b[0] for b in prompts.roi]
        corner_b = [b[1] for b in prompts.roi]
        (xa, ya), (xb, yb) = view.voxel_to_xy(corner_a), view.voxel_to_xy(corner_b)
        if xa == xb or ya == yb:
            raise InvalidRequestError(
                f"The ROI is flat in the slice plane ({prompts.roi}); drag a box with a width and a height."
            )
        box = np.array([min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)], dtype=float)

    if len(xy) == 0 and box is None:
        raise InvalidRequestError(f"No prompt on slice {index}: click inside the structure on that slice or draw a box there.")
    if len(xy) and not labels.any() and box is None:
        raise InvalidRequestError("Only background points were sent: add a foreground point or a box first.")
    return SlicePrompt(points_xy=xy, point_labels=labels, box_xyxy=box)
