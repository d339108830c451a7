"""What identifies one slice embedding: everything that changes the encoder's output for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddingKey:
    """Image content, slice, how the slice is turned to display orientation, preprocessing and encoder
    (checkpoint hash and numeric precision).

    The voxels alone do not fix what SAM sees: the header's direction decides which voxel axis becomes rows
    and which are flipped (:class:`~medicosam_app.geometry.coordinates.SliceView`). The same voxels under a
    corrected or flipped header are another picture, so ``orientation`` is part of the key. Spacing is not:
    slices are shown to SAM pixel for pixel, never resampled.
    """

    image_hash: str
    axis: int
    index: int
    preprocessing: str
    encoder: str
    orientation: str  # SliceView.orientation, e.g. "r1+c0-"
