"""The rule for NaN and infinite voxels in an image: they are read as the image's lowest finite value.

Float images from processing pipelines (a PET SUV map, a registered or resampled volume) often hold NaN outside
the field of view. Left in, one NaN makes the per-volume min–max scaling NaN and the model sees nothing; read as
0 (what SimpleITK's NIfTI reader does, silently) they become a bright rim on a CT in HU. The lowest finite value
is the background of the image's own scale. The count is logged; an image with no finite voxel at all is refused.
Labels are not images: a NaN in a label is refused (:mod:`.label_check`).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from ..errors import ImageReadError
from .file_integrity import FileCheck, count_nonfinite

logger = logging.getLogger(__name__)


def _nifti_nonfinite_mask(path: "os.PathLike[str] | str") -> np.ndarray:
    """Where a float NIfTI file holds NaN or infinity, as an (i, j, k) mask (SimpleITK has zeroed them)."""
    import nibabel

    data = np.asanyarray(nibabel.load(os.fspath(path)).dataobj)
    return ~np.isfinite(data.reshape(data.shape[:3] + (-1,))).any(axis=-1) if data.ndim > 3 else ~np.isfinite(data)


def fill_nonfinite(array: np.ndarray, name: str, path: Optional["os.PathLike[str] | str"] = None,
                   found: Optional[FileCheck] = None, refuse: bool = False) -> np.ndarray:
    """``array`` ((i, j, k) or (i, j, k, c)) with its NaN and infinite voxels set to its lowest finite value.
    ``path`` and ``found``: the file and its check, to find the voxels SimpleITK's NIfTI reader turned into 0.
    ``refuse``: a label's rule instead: any such voxel is an :class:`ImageReadError`."""
    if array.dtype.kind != "f":
        return array
    mask = ~np.isfinite(array)
    if path is not None and found is not None and count_nonfinite(path, found):
        zeroed = _nifti_nonfinite_mask(path)
        mask |= zeroed[..., None] if mask.ndim == 4 else zeroed
    count = int(np.count_nonzero(mask))
    if not count:
        return array
    if refuse:
        raise ImageReadError(f"{name}: {count} voxel(s) are not finite numbers (NaN or infinity); a label holds "
                             "one class number per voxel.")
    finite = array[~mask]
    if finite.size == 0:
        raise ImageReadError(f"{name} holds no finite voxel (every value is NaN or infinite): it is not an image.")
    array = array.copy()
    array[mask] = finite.min()
    logger.warning("%s: %d NaN or infinite voxel(s) read as the image's lowest value, %g", name, count, finite.min())
    return array
