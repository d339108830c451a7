"""Images as voxel arrays with their geometry, and label volumes written back in that exact geometry.

Voxel indices are ``[i, j, k]`` as 3D Slicer and ITK number them (i fastest in the file). ``Volume.array``
is indexed the same way, ``array[i, j, k]`` (``array[i, j, k, channel]`` for colour), so a client's index
never needs reordering elsewhere.

One image model, three shapes (``Volume.layout``): a 3D ``volume`` (CT, MR, PET), a 2D ``plane`` (a radiograph,
a photograph: k has one slice) and 2D + time, a ``cine`` (frames along k); a ``stack`` is several unrelated
2D pictures of one size along k. Tasks ask the image for slices along k and never look at its file format.
Readers: NIfTI/NRRD/MHA (SimpleITK), PNG/JPEG/TIFF (:mod:`.pictures`), DICOM (:mod:`..dicom.image`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import xxhash

from ..errors import ImageReadError, InvalidRequestError
from .channels import image_channels
from .coordinates import SliceView
from .file_integrity import FileCheck, IncompleteFileError, check_file_complete
from .nonfinite import fill_nonfinite
from .pictures import is_picture, read_picture

LAYOUTS = ("volume", "plane", "cine", "stack")
# Files a folder datastore lists as images (beside MONAI Label's own list): volumes, pictures, single DICOM files.
IMAGE_FILE_PATTERNS = ("*.nii.gz", "*.nii", "*.nrrd", "*.mha", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.dcm")
# Keys of the NRRD header that keep what a converted image is (its layout, its frame time) across a restart.
LAYOUT_KEY, FRAME_TIME_KEY = "medicosam_layout", "medicosam_frame_time_ms"


@dataclass(frozen=True)
class Volume:
    """An image: ``array[i, j, k]`` (grey) or ``array[i, j, k, 3]`` (RGB) plus the ITK (LPS) geometry of the
    file it came from, its layout (volume, plane, cine, stack) and, for a clip, the time between frames."""

    array: np.ndarray
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: np.ndarray  # 3x3, columns are the world (LPS) directions of the i, j, k axes
    content_hash: str = field(default="")
    layout: str = "volume"
    frame_time_ms: Optional[float] = None

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The voxel grid ``(i, j, k)``; a colour image's channels are not part of it."""
        return tuple(self.array.shape[:3])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])

    @property
    def is_colour(self) -> bool:
        return self.array.ndim == 4

    @property
    def frame_name(self) -> str:
        """What one step along k is called to a user: a slice of a volume, a frame of a clip, an image of a stack."""
        return {"cine": "frame", "stack": "image", "plane": "image"}.get(self.layout, "slice")

    def view(self, axis: int = 2) -> SliceView:
        """Slices across voxel ``axis`` in display orientation. A plane, clip or stack is cut only along k: its
        other axes are rows and columns of a picture, and a cut across time or across unrelated pictures is
        no image at all (:class:`InvalidRequestError`, HTTP 422)."""
        if self.layout != "volume" and axis != 2:
            what = {"plane": "a 2D image", "cine": "a 2D + time clip", "stack": "a stack of 2D images"}[self.layout]
            raise InvalidRequestError(
                f"The image is {what}: it has {self.frame_name}s along axis 2 (k) only, so axis {axis} cannot be "
                "used. Leave the axis out or send 2.")
        return SliceView.create(self.shape, self.direction, axis)

    def configured_view(self, axis: int) -> SliceView:
        """Slices across a server-wide configured ``axis`` (semantic training, evaluation): that axis for a volume,
        k for a plane, clip or stack, whose only slices are their frames. A request's own axis uses :meth:`view`."""
        return self.view(axis if self.layout == "volume" else 2)


def read_volume(path: os.PathLike, nonfinite: Literal["fill", "refuse"] = "fill") -> Volume:
    """Read an image file (NIfTI / NRRD / MHA, PNG / JPEG / TIFF, one DICOM file) or a DICOM folder.

    Colour stays colour (RGB; an alpha channel is dropped; two channels, nuclear and membrane, become CellSAM's
    blank-nuclear-membrane triple). A 2D image becomes one slice, layout ``plane``.

    A file is first checked whole (:func:`~.file_integrity.check_file_complete`): SimpleITK reads a cut
    ``.nii.gz`` or ``.nii`` without an error, with zeros where the voxels are missing. The check costs one
    more decompression of the file, paid once per file version (volumes are cached): on 2 CPU cores 82 ms for
    the sample MNI T1 (2.2 MB gzip, 35 MB of voxels; SimpleITK's read 77 ms, this whole function 338 ms),
    3 ms for the CT phantom; a raw file costs one ``stat``.

    NaN and infinite voxels are read as the image's lowest finite value (``nonfinite="fill"``, see
    :mod:`.nonfinite`) or refused (``"refuse"``: labels)."""
    path = Path(path)
    if path.is_dir() or is_dicom_file(path):
        return _from_dicom(path)
    found = check_complete(path) if path.is_file() else None
    if is_picture(path):
        picture = read_picture(path)
        return Volume(picture.array, picture.spacing, (0.0, 0.0, 0.0), np.eye(3), hash_array(picture.array),
                      picture.layout)
    try:
        image = _read_image(path)
    except RuntimeError as error:
        raise ImageReadError(f"Cannot read image {path.name}: {str(error).strip().splitlines()[-1]}") from error
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise ImageReadError(f"{path.name} has {image.GetDimension()} dimensions; a 2D or 3D image is needed.")
    array = image_channels(sitk.GetArrayFromImage(image), path.name)
    array = np.ascontiguousarray(array.transpose((2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)))
    array = fill_nonfinite(array, path.name, path, found, refuse=nonfinite == "refuse")
    layout, frame_time = _stored_layout(image, array)
    return Volume(
        array=array,
        spacing=tuple(image.GetSpacing()),
        origin=tuple(image.GetOrigin()),
        direction=np.array(image.GetDirection(), dtype=float).reshape(3, 3),
        content_hash=hash_array(array),
        layout=layout,
        frame_time_ms=frame_time,
    )


def read_label(path: os.PathLike) -> Volume:
    """A label map, one class number per voxel, in any format :func:`read_volume` reads. A palette PNG gives its
    indices (a mask saved with a colour table); a colour file whose channels are all equal (a mask saved as RGB)
    gives one of them; other colour is refused, since colours are not class numbers."""
    path = Path(path)
    if is_picture(path):
        check_complete(path)
        picture = read_picture(path, palette_indices=True)
        label = Volume(picture.array, picture.spacing, (0.0, 0.0, 0.0), np.eye(3), "", picture.layout)
    else:
        label = read_volume(path, nonfinite="refuse")
    if label.is_colour:
        channels = label.array
        if not all(np.array_equal(channels[..., 0], channels[..., c]) for c in range(1, channels.shape[-1])):
            raise ImageReadError(
                f"{path.name} is a colour image, not a label map: save the mask with one class number per pixel "
                "(a greyscale or palette PNG, or NIfTI/NRRD).")
        label = Volume(np.ascontiguousarray(channels[..., 0]), label.spacing, label.origin, label.direction,
                       "", label.layout, label.frame_time_ms)
    return Volume(label.array, label.spacing, label.origin, label.direction, hash_array(label.array), label.layout,
                  label.frame_time_ms)


def _stored_layout(image: sitk.Image, array: np.ndarray) -> Tuple[str, Optional[float]]:
    """The layout a converted image was written with (NRRD header keys), else a plane for one slice."""
    layout = image.GetMetaData(LAYOUT_KEY).strip() if image.HasMetaDataKey(LAYOUT_KEY) else ""
    if layout not in LAYOUTS:
        layout = "plane" if array.shape[2] == 1 and image.GetDimension() == 3 and _is_2d_file(image) else "volume"
    frame_time = None
    if image.HasMetaDataKey(FRAME_TIME_KEY):
        try:
            frame_time = float(image.GetMetaData(FRAME_TIME_KEY))
        except ValueError:
            frame_time = None
    return layout, frame_time


def _is_2d_file(image: sitk.Image) -> bool:
    """A single slice with an identity direction and no origin: a picture saved in a volume format."""
    return bool(np.allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3)) and
                np.allclose(image.GetOrigin(), 0))


def _from_dicom(path: Path) -> Volume:
    from ..dicom.image import read_dicom_files, read_dicom_folder

    dicom = read_dicom_folder(path) if path.is_dir() else read_dicom_files([path], name=path.name)
    array = dicom.array
    return Volume(array, dicom.spacing, dicom.origin, np.asarray(dicom.direction, float), hash_array(array),
                  dicom.layout, dicom.frame_time_ms)


def is_dicom_file(path: Path) -> bool:
    """A file with the DICOM preamble ("DICM" at byte 128), whatever its name."""
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def check_complete(path: Path) -> FileCheck:
    """What the file's header promised, checked; :class:`ImageReadError` naming the file if it is truncated or
    corrupt."""
    try:
        return check_file_complete(path)
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
    """An ITK image of ``array[i, j, k]`` (or ``[i, j, k, channel]``) with ``like``'s spacing, origin and direction."""
    colour = array.ndim == 4
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose((2, 1, 0, 3) if colour else (2, 1, 0))),
                                   isVector=colour)
    image.SetSpacing(like.spacing)
    image.SetOrigin(like.origin)
    image.SetDirection(tuple(np.asarray(like.direction, float).ravel()))
    return image


def write_image(volume: Volume, path: os.PathLike, notes: Optional[dict] = None) -> Path:
    """Write ``volume`` (colour included) as NRRD with its layout and frame time in the header, atomically: what
    a PACS series is converted to, read back by :func:`read_volume` as the same image. ``notes``: more header
    keys (strings), such as where the image came from."""
    path = Path(path)
    image = to_sitk(volume.array, volume)
    for key, value in (notes or {}).items():
        image.SetMetaData(str(key), str(value))
    image.SetMetaData(LAYOUT_KEY, volume.layout)
    if volume.frame_time_ms is not None:
        image.SetMetaData(FRAME_TIME_KEY, f"{volume.frame_time_ms:.6g}")
    partial = path.with_name(f".part_{path.name}")
    sitk.WriteImage(image, str(partial), useCompression=True)
    os.replace(partial, path)
    return path


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
    if label.shape[:3] != like.shape:
        raise ValueError(f"label shape {label.shape} differs from image shape {like.shape}")
    if suffix not in (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha"):
        suffix = ".nii.gz"
    fd, final = tempfile.mkstemp(suffix=suffix, prefix="medicosam_label_", dir=directory)
    os.close(fd)
    partial = final[: -len(suffix)] + ".part" + suffix
    sitk.WriteImage(to_sitk(label, like), partial, useCompression=compress or suffix == ".nii.gz")
    os.replace(partial, final)
    return Path(final)
