"""Prompts as clients send them (voxel indices) → validated prompts → one slice's SAM prompt in pixels.

3D Slicer sends ``foreground`` / ``background`` as lists of voxel indices ``[i, j, k]``, an ``roi`` as
``[i0, i1, j0, j1, k0, k1]`` and the current ``slice``; OHIF sends only the points of the last clicked
slice and no ``slice``. Everything is checked here, and every rejection says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidRequestError
from ..geometry.coordinates import SliceView
from ..request_values import parse_int, parse_number, shortened_repr

Voxel = Tuple[int, int, int]


@dataclass(frozen=True)
class VoxelPrompts:
    """Validated prompts in voxel indices of the image."""

    foreground: Tuple[Voxel, ...] = ()
    background: Tuple[Voxel, ...] = ()
    roi: Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]] = None  # (lo, hi) per axis, inclusive
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


MAX_POINTS = 1000  # per request, foreground and background together; a click session has a few dozen


def _coordinate(value: Any, key: str) -> int:
    """One voxel coordinate: a finite number (OHIF may send fractions), rounded to the nearest index."""
    return int(round(parse_number(value, key)))


def _voxel(value: Any, key: str, shape: Sequence[int]) -> Voxel:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise InvalidRequestError(f"'{key}' must be a voxel index [i, j, k], got {shortened_repr(value)}.")
    ijk = tuple(_coordinate(v, f"{key}[{n}]") for n, v in enumerate(value))
    if not all(0 <= v < n for v, n in zip(ijk, shape)):
        raise InvalidRequestError(
            f"'{key}' {list(ijk)} lies outside the image, whose voxel indices run from [0, 0, 0] to "
            f"{[n - 1 for n in shape]}. Click inside the image."
        )
    return ijk  # type: ignore[return-value]


def _points(params: Mapping[str, Any], key: str, shape: Sequence[int]) -> Tuple[Voxel, ...]:
    value = params.get(key)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise InvalidRequestError(
            f"'{key}' must be a list of voxel indices [[i, j, k], ...], got {shortened_repr(value)}."
        )
    return tuple(_voxel(p, f"{key}[{n}]", shape) for n, p in enumerate(value))


def parse_roi(value: Any, shape: Sequence[int], key: str = "roi"):
    """A box ``[i0, i1, j0, j1, k0, k1]`` of voxel indices → ``((i0, i1), (j0, j1), (k0, k1))``, ordered and
    clipped to the image; ``None`` or ``[]`` is no box. A box wholly outside the image is a 422."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 6:
        raise InvalidRequestError(f"'{key}' must be [i0, i1, j0, j1, k0, k1], got {shortened_repr(value)}.")
    numbers = [_coordinate(v, f"{key}[{n}]") for n, v in enumerate(value)]
    bounds = []
    for axis, (a, b) in enumerate(zip(numbers[0::2], numbers[1::2])):
        # Slicer maps the ROI's RAS min/max corners to IJK, so on an axis that runs against RAS (every
        # LPS-stored DICOM series) its first value is the larger one. The box is the same either way.
        lo, hi = min(a, b), max(a, b)
        if hi < 0 or lo >= shape[axis]:
            raise InvalidRequestError(
                f"'{key}' {numbers} lies outside the image on axis {'ijk'[axis]} (0..{shape[axis] - 1}). "
                "Draw the box inside the image."
            )
        bounds.append((max(lo, 0), min(hi, shape[axis] - 1)))
    return tuple(bounds)


def _count_points(params: Mapping[str, Any]) -> None:
    """Refuse a flood of points before validating each one (the work grows with their number)."""
    count = sum(len(v) for v in (params.get("foreground"), params.get("background")) if isinstance(v, (list, tuple)))
    if count > MAX_POINTS:
        raise InvalidRequestError(
            f"{count} points were sent; at most {MAX_POINTS} (foreground and background together) are accepted.",
            status=413,
        )


def parse_voxel_prompts(params: Mapping[str, Any], shape: Sequence[int]) -> VoxelPrompts:
    """Validate a request's ``foreground``, ``background``, ``roi`` and ``slice`` against an image shape."""
    _count_points(params)
    slice_value = params.get("slice")
    return VoxelPrompts(
        foreground=_points(params, "foreground", shape),
        background=_points(params, "background", shape),
        roi=parse_roi(params.get("roi"), shape),
        # The range is checked against the slicing axis in choose_slice; a fraction is never a slice.
        slice_index=None if slice_value is None else parse_int(slice_value, "slice"),
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
