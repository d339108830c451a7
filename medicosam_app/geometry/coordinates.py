"""The one place that converts coordinates: voxel ``[i, j, k]`` ↔ slice pixel ``(row, col)`` ↔ SAM input frame.

A slice is shown to SAM the way a radiologist sees it (the model was trained on images in display
orientation): axial with anterior at the top and the patient's right on the left of the screen, coronal
and sagittal with superior at the top. Which voxel axis becomes rows or columns, and whether either is
flipped, follows from the image's direction cosines, so an RAS-stored NIfTI and an LPS-stored DICOM
series give SAM the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from segment_anything.utils.transforms import ResizeLongestSide

# Screen directions in ITK's LPS world: (direction of increasing row, of increasing column) per plane.
_DISPLAY_AXES = {
    "axial": (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),  # rows A→P, columns R→L
    "coronal": (np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])),  # rows S→I, columns R→L
    "sagittal": (np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])),  # rows S→I, columns A→P
}
_PLANE_OF_NORMAL = {0: "sagittal", 1: "coronal", 2: "axial"}  # dominant LPS component of the slice normal


@dataclass(frozen=True)
class SliceView:
    """How slices across voxel axis ``axis`` of a volume map to 2D pixel arrays in display orientation."""

    axis: int
    shape: Tuple[int, int, int]
    row_axis: int
    col_axis: int
    flip_rows: bool
    flip_cols: bool
    plane: str

    @classmethod
    def create(cls, shape: Sequence[int], direction: np.ndarray, axis: int = 2) -> "SliceView":
        """Work out rows, columns and flips for slices normal to voxel ``axis``."""
        if axis not in (0, 1, 2):
            raise ValueError(f"slice axis must be 0, 1 or 2, not {axis}")
        direction = np.asarray(direction, dtype=float).reshape(3, 3)
        plane = _PLANE_OF_NORMAL[int(np.argmax(np.abs(direction[:, axis])))]
        row_dir, col_dir = _DISPLAY_AXES[plane]
        u, v = [a for a in (0, 1, 2) if a != axis]
        # The in-plane voxel axis closer to the screen's vertical becomes the rows.
        if abs(direction[:, u] @ row_dir) + abs(direction[:, v] @ col_dir) >= abs(direction[:, v] @ row_dir) + abs(
            direction[:, u] @ col_dir
        ):
            row_axis, col_axis = u, v
        else:
            row_axis, col_axis = v, u
        return cls(
            axis=axis,
            shape=tuple(int(n) for n in shape),  # type: ignore[arg-type]
            row_axis=row_axis,
            col_axis=col_axis,
            flip_rows=bool(direction[:, row_axis] @ row_dir < 0),
            flip_cols=bool(direction[:, col_axis] @ col_dir < 0),
            plane=plane,
        )

    @property
    def orientation(self) -> str:
        """Which voxel axes become rows and columns and whether each is flipped, e.g. ``"r1+c0-"``: two
        volumes with the same voxels give SAM the same slice pictures only if this is the same."""
        return f"r{self.row_axis}{'-' if self.flip_rows else '+'}c{self.col_axis}{'-' if self.flip_cols else '+'}"

    @property
    def pixel_shape(self) -> Tuple[int, int]:
        """(rows, columns) of one slice."""
        return self.shape[self.row_axis], self.shape[self.col_axis]

    @property
    def num_slices(self) -> int:
        return self.shape[self.axis]

    def extract(self, array: np.ndarray, index: int) -> np.ndarray:
        """Slice ``index`` of ``array[i, j, k]`` as a 2D array in display orientation (a view, not a copy); a
        colour ``array[i, j, k, channel]`` gives ``(rows, columns, channel)``."""
        selector = [slice(None)] * 3
        selector[self.axis] = index
        plane = array[tuple(selector)]  # basic indexing keeps a view, unlike np.take
        in_plane = [a for a in (0, 1, 2) if a != self.axis]
        if in_plane.index(self.row_axis) == 1:
            plane = np.swapaxes(plane, 0, 1)  # rows first; a trailing channel axis stays last
        return plane[:: -1 if self.flip_rows else 1, :: -1 if self.flip_cols else 1]

    def paste(self, pixels: np.ndarray, volume: np.ndarray, index: int) -> None:
        """Write a 2D display-orientation array into slice ``index`` of ``volume[i, j, k]`` in place."""
        target = self.extract(volume, index)  # a view into volume with the same orientation
        target[...] = pixels

    def voxel_to_pixel(self, ijk: Sequence[float]) -> Tuple[float, float]:
        """(row, col) of voxel ``ijk`` within its slice."""
        rows, cols = self.pixel_shape
        row, col = float(ijk[self.row_axis]), float(ijk[self.col_axis])
        return (rows - 1 - row if self.flip_rows else row), (cols - 1 - col if self.flip_cols else col)

    def voxel_to_xy(self, ijk: Sequence[float]) -> Tuple[float, float]:
        """SAM's point convention, (x, y) = (col, row), for voxel ``ijk``."""
        row, col = self.voxel_to_pixel(ijk)
        return col, row

    def slice_of(self, ijk: Sequence[float]) -> int:
        return int(ijk[self.axis])


@dataclass(frozen=True)
class SamFrame:
    """SAM's input frame for one image: resized so the longest side is ``image_size``, padded bottom/right."""

    original_size: Tuple[int, int]
    image_size: int = 1024

    @property
    def transform(self) -> ResizeLongestSide:
        return ResizeLongestSide(self.image_size)

    @property
    def input_size(self) -> Tuple[int, int]:
        """(rows, columns) of the resized image before padding."""
        return ResizeLongestSide.get_preprocess_shape(*self.original_size, self.image_size)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Pixel (x, y) points → SAM frame."""
        return self.transform.apply_coords(np.asarray(xy, dtype=float).reshape(-1, 2), self.original_size)

    def boxes(self, xyxy: np.ndarray) -> np.ndarray:
        """Pixel XYXY boxes → SAM frame."""
        return self.transform.apply_boxes(np.asarray(xyxy, dtype=float).reshape(-1, 4), self.original_size)
