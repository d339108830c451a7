"""The objects an evaluation prompts: each class of a final label split into connected components.

MedicoSAM evaluates a semantic label the way an annotator works on it: every connected component of every
class is one object, prompted on its own, and components under 20 pixels are left out (nobody clicks a
speck). In 2D the objects live on display-orientation slices; in 3D they are 26-connected components.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..geometry.coordinates import SliceView

MIN_OBJECT_PIXELS = 20  # medico-sam's evaluation drops smaller components

_CONNECTIVITY_2D = np.ones((3, 3), dtype=bool)  # 8-connected: a diagonal touch is one object
_CONNECTIVITY_3D = np.ones((3, 3, 3), dtype=bool)  # 26-connected


@dataclass(frozen=True)
class SliceObject:
    """One connected component of one class on one display-orientation slice."""

    image_id: str
    axis: int
    slice_index: int
    class_name: str
    component: int  # 1.. within (slice, class), largest first
    mask: np.ndarray  # (H, W) bool, display orientation

    @property
    def name(self) -> str:
        return f"{self.image_id}/axis{self.axis}/slice{self.slice_index}/{self.class_name}#{self.component}"

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class VolumeObject:
    """One 26-connected component of one class in the whole volume (array order i, j, k)."""

    image_id: str
    class_name: str
    component: int
    mask: np.ndarray  # (I, J, K) bool

    @property
    def name(self) -> str:
        return f"{self.image_id}/{self.class_name}#{self.component}"


def components(mask: np.ndarray, min_size: int = MIN_OBJECT_PIXELS) -> List[np.ndarray]:
    """Connected components of a 2D or 3D boolean mask of at least ``min_size`` elements, largest first
    (ties in raster order of their first element, so the numbering never depends on chance)."""
    structure = _CONNECTIVITY_2D if mask.ndim == 2 else _CONNECTIVITY_3D
    labelled, count = ndimage.label(mask, structure=structure)
    if count == 0:
        return []
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    keep = [n for n in range(1, count + 1) if sizes[n] >= min_size]
    keep.sort(key=lambda n: -sizes[n])  # stable: equal sizes stay in label (raster) order
    return [labelled == n for n in keep]


def class_masks(label: np.ndarray, classes: Dict[str, int]) -> Iterator[Tuple[str, np.ndarray]]:
    """(class name, boolean mask) for each class present in ``label``, in the order of ``classes``."""
    for name, value in classes.items():
        mask = label == value
        if mask.any():
            yield name, mask


def foreground_slices(label: np.ndarray, view: SliceView, max_slices: int) -> List[int]:
    """Slices with any foreground, thinned evenly to at most ``max_slices`` (0: all of them)."""
    in_plane = tuple(a for a in (0, 1, 2) if a != view.axis)
    indices = [int(i) for i in np.flatnonzero(np.any(label > 0, axis=in_plane))]
    if max_slices > 0 and len(indices) > max_slices:
        picks = np.linspace(0, len(indices) - 1, max_slices).round().astype(int)
        indices = [indices[i] for i in sorted(set(picks))]
    return indices


def slice_objects(
    image_id: str,
    label: np.ndarray,
    view: SliceView,
    classes: Dict[str, int],
    slices: Sequence[int],
    min_size: int = MIN_OBJECT_PIXELS,
) -> List[SliceObject]:
    """The 2D objects of the given slices of a label volume (values per ``classes``)."""
    found = []
    for index in slices:
        plane = np.ascontiguousarray(view.extract(label, index))
        for name, mask in class_masks(plane, classes):
            for number, component in enumerate(components(mask, min_size), start=1):
                found.append(SliceObject(image_id, view.axis, index, name, number, component))
    return found


def volume_objects(
    image_id: str, label: np.ndarray, classes: Dict[str, int], min_size: int = MIN_OBJECT_PIXELS
) -> List[VolumeObject]:
    """The 3D objects of a label volume: each class's 26-connected components of at least ``min_size`` voxels."""
    return [
        VolumeObject(image_id, name, number, component)
        for name, mask in class_masks(label, classes)
        for number, component in enumerate(components(mask, min_size), start=1)
    ]
