"""Images as voxel arrays with their geometry, and label volumes written back in that exact geometry.

Voxel indices are ``[i, j, k]`` as 3D Slicer and ITK number them (i fastest in the file). ``Volume.array``
is indexed the same way, ``array[i, j, k]``, so a client's index never needs reordering elsewhere.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Tuple

import numpy as np
import SimpleITK as sitk
import xxhash

from ..errors import ImageReadError
from .file_integrity import IncompleteFileError, check_file_complete


@dataclass(frozen=True)
class Volume:
    """A 3D scalar image: ``array[i, j, k]`` plus the ITK (LPS) geometry of the file it came from."""

    array: np.ndarray
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: np.ndarray  # 3x3, columns are the world (LPS) directions of the i, j, k axes
    content_hash: str = field(default="")

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]


def read_volume(path: os.PathLike) -> Volume:
    """Read a NIfTI / NRRD / MHA file or a DICOM series folder; a 2D image becomes one slice.

    A file is first checked whole (:func:`~.file_integrity.check_file_complete`): SimpleITK reads a cut
    ``.nii.gz`` or ``.nii`` without an error, with zeros where the voxels are missing. The check costs one
    more decompression of the file, paid once per file version (volumes are cached): on 2 CPU cores 82 ms for
    the sample MNI T1 (2.2 MB gzip, 35 MB of voxels; SimpleITK's read 77 ms, this whole function 338 ms),
    3 ms for the CT phantom; a raw file costs one ``stat``."""
    path = Path(path)
    if path.is_file():
        check_complete(path)
    try:
        image = _read_image(path)
    except RuntimeError as error:
        raise ImageReadError(f"Cannot read image {path.name}: {str(error).strip().splitlines()[-1]}") from error
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path.name} has {image.GetNumberOfComponentsPerPixel()} values per voxel; a scalar CT or MR image is needed."
        )
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise ImageReadError(f"{path.name} has {image.GetDimension()} dimensions; a 2D or 3D image is needed.")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    return Volume(
        array=array,
        spacing=tuple(image.GetSpacing()),
        origin=tuple(image.GetOrigin()),
        direction=np.array(image.GetDirection(), dtype=float).reshape(3, 3),
        content_hash=hash_array(array),
    )


def check_complete(path: Path) -> None:
    """:class:`ImageReadError` naming the file if it is truncated or corrupt."""
    try:
        check_file_complete(path)
    except IncompleteFileError as error:
        raise ImageReadError(
            f"Image {path.name} is truncated or corrupt: {error}. Replace it with a complete copy of the file."
        ) from None
    except OSError as error:
        raise ImageReadError(f"Cannot read image {path.name}: {error.strerror or error}.") from None


def image_size(path: os.PathLike) -> Tuple[int, int, int]:
    """``(i, j, k)`` sizes of an image file from its header, without reading the voxels (a 2D image: k = 1)."""
    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ImageReadError(f"Cannot read the header of {path.name}: {str(error).strip().splitlines()[-1]}") from error
    size = tuple(int(n) for n in reader.GetSize()) + (1, 1)
    return size[0], size[1], size[2]


def _read_image(path: Path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ImageReadError(f"{path.name} is a folder without a DICOM series.")
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
        return reader.Execute()
    if not path.is_file():
        raise ImageReadError(f"Image file {path.name} does not exist.")
    return sitk.ReadImage(str(path))


def hash_array(array: np.ndarray) -> str:
    """A content key for caches: the voxel bytes plus shape and dtype."""
    digest = xxhash.xxh3_128()
    digest.update(repr((array.shape, array.dtype.str)).encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def to_sitk(array: np.ndarray, like: Volume) -> sitk.Image:
    """An ITK image of ``array[i, j, k]`` with ``like``'s spacing, origin and direction."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(like.spacing)
    image.SetOrigin(like.origin)
    image.SetDirection(tuple(like.direction.ravel()))
    return image


def write_label(
    label: np.ndarray,
    like: Volume,
    suffix: str = ".nii.gz",
    directory: os.PathLike | None = None,
    compress: bool = True,
) -> Path:
    """Write a label volume in ``like``'s geometry to a new file and return its path.

    The file is written under a temporary name and renamed, so a reader never sees half a file.
    ``compress=False`` writes raw voxels (the OHIF extension asks for that: ``result_compress: false``);
    a ``.nii.gz`` is always compressed, as its name says.
    """
    if label.shape != like.shape:
        raise ValueError(f"label shape {label.shape} differs from image shape {like.shape}")
    if suffix not in (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha"):
        suffix = ".nii.gz"
    fd, final = tempfile.mkstemp(suffix=suffix, prefix="medicosam_label_", dir=directory)
    os.close(fd)
    partial = final[: -len(suffix)] + ".part" + suffix
    sitk.WriteImage(to_sitk(label, like), partial, useCompression=compress or suffix == ".nii.gz")
    os.replace(partial, final)
    return Path(final)
