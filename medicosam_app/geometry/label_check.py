"""An uploaded label checked whole before it is saved: complete, one whole class number per voxel, and on its
image's grid.

SimpleITK reads a cut ``.nii.gz`` as zeros without an error, so the file is first checked complete
(:mod:`.file_integrity`); then its voxels must be one whole number 0..65535 each (:func:`read_checked_label`),
and it must lie on the image's grid (:func:`on_image_grid`). Every refusal is an
:class:`~medicosam_app.errors.InvalidRequestError` (HTTP 422) that says what to fix.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InvalidRequestError
from .file_integrity import FileCheck, IncompleteFileError, check_file_complete, count_nonfinite
from .pictures import is_picture

logger = logging.getLogger(__name__)

MAX_LABEL_VALUE = 65535  # atlases with many classes; what a uint16 labelmap and DICOM SEG segment numbers hold
# Label formats that carry spacing, origin and direction (a label in another format cannot be given the image's).
GEOMETRY_FORMATS = (".nii.gz", ".nii", ".nrrd", ".mha")
# A label's grid is the image's if it differs by no more than this (file formats store geometry in float32):
SPACING_TOLERANCE = 1e-4  # relative to the image's spacing
ORIGIN_TOLERANCE = 1e-3  # in voxels of the image's smallest spacing
DIRECTION_TOLERANCE = 1e-4  # per direction cosine (1e-4 rad shifts the far edge of 512 voxels by 0.05 voxel)
DEFAULT_TOLERANCE = 1e-6
FIX_FILE = "Save the label again and upload the complete file"


@dataclass
class Grid:
    """An image's voxel grid: size (i, j, k, padded with 1), dimension, spacing, origin and direction."""

    size: Tuple[int, ...]
    dimension: int
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray  # dimension × dimension, columns are the axes' world directions

    @classmethod
    def of(cls, source: Any) -> "Grid":
        dimension = source.GetDimension()
        size = tuple(int(n) for n in source.GetSize())
        direction = np.array(source.GetDirection(), float).reshape(dimension, dimension)
        return cls(size + (1,) * (3 - len(size)), dimension, np.array(source.GetSpacing(), float),
                   np.array(source.GetOrigin(), float), direction)

    @classmethod
    def of_image(cls, path: str) -> "Grid":
        """The grid the server gives an image file, the one its answers are written on: from the header for
        volume formats; from the server's own reader for pictures and DICOM (ITK would read a radiograph's
        spacing, or a colour PNG's, differently or not at all). :class:`~..errors.ImageReadError` if unreadable."""
        from .volume import is_dicom_file, read_volume

        if is_picture(Path(path)) or is_dicom_file(Path(path)):
            volume = read_volume(path)
            return cls(volume.shape, 3, np.array(volume.spacing, float), np.array(volume.origin, float),
                       np.asarray(volume.direction, float))
        return cls.read(path)

    @classmethod
    def read(cls, path: str) -> "Grid":
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        return cls.of(reader)

    def is_default(self) -> bool:
        """Spacing 1, origin 0, identity direction: what a file holds when its writer gave no geometry."""
        return bool(np.allclose(self.spacing, 1, rtol=0, atol=DEFAULT_TOLERANCE)
                    and np.allclose(self.origin, 0, rtol=0, atol=DEFAULT_TOLERANCE)
                    and np.allclose(self.direction, np.eye(self.dimension), rtol=0, atol=DEFAULT_TOLERANCE))

    def differences(self, image: "Grid") -> List[str]:
        """What of this grid is not ``image``'s (compared on the dimensions both have)."""
        d = min(self.dimension, image.dimension)
        ours, theirs = (self.spacing[:d], self.origin[:d], self.direction[:d, :d]), \
            (image.spacing[:d], image.origin[:d], image.direction[:d, :d])
        found = []
        if np.any(np.abs(ours[0] - theirs[0]) > SPACING_TOLERANCE * np.abs(theirs[0])):
            found.append(f"spacing {_numbers(ours[0])} (the image's: {_numbers(theirs[0])})")
        if np.any(np.abs(ours[1] - theirs[1]) > ORIGIN_TOLERANCE * float(np.min(np.abs(theirs[0])))):
            found.append(f"origin {_numbers(ours[1])} (the image's: {_numbers(theirs[1])})")
        if np.any(np.abs(ours[2] - theirs[2]) > DIRECTION_TOLERANCE):
            found.append(f"direction {_numbers(ours[2].ravel())} (the image's: {_numbers(theirs[2].ravel())})")
        return found


def _numbers(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in np.asarray(values).ravel()) + "]"


@dataclass
class CheckedLabel:
    """A label file decoded whole and checked: its image, a [k, j, i] view of its voxels, what the file
    check found."""

    image: sitk.Image
    file: FileCheck

    @property
    def array(self) -> np.ndarray:
        return sitk.GetArrayViewFromImage(self.image)


def read_checked_label(path: str) -> CheckedLabel:
    """Decode the uploaded label completely, or refuse it (:class:`InvalidRequestError`, HTTP 422, saying what to fix): a file that is
    truncated or corrupt, keeps its voxels in another file, cannot be decoded, has more than one value per
    voxel, or values that are not whole numbers 0..65535."""
    try:
        found = check_file_complete(path, allow_detached_data=False)
    except IncompleteFileError as error:
        raise InvalidRequestError(f"The label file is truncated or corrupt: {error}. {FIX_FILE}.") from None
    except OSError as error:
        raise InvalidRequestError(f"The label file cannot be read: {error.strerror or 'unreadable'}.") from None
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as error:
        raise InvalidRequestError(
            f"The label file cannot be read as an image ({_reader_reason(error)}): save it as NIfTI (.nii.gz, "
            ".nii), NRRD (.nrrd) or MetaImage (.mha), with the file name's extension matching its format.",
        ) from None
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise InvalidRequestError(
            f"The label has {components} values per voxel (an RGB or vector image); a label map holds one class "
            "number per voxel: export the segmentation as a labelmap (one component, e.g. uint8 or uint16).",
        )
    label = CheckedLabel(image, found)
    problems = label_value_problems(label.array)
    nonfinite = count_nonfinite(path, found)  # SimpleITK reads NIfTI NaN as 0; the file keeps them
    if nonfinite:
        problems.insert(0, f"{nonfinite} voxel(s) are not finite numbers (NaN or infinity)")
    if problems:
        raise InvalidRequestError(
            f"The label's voxel values cannot be class numbers: {'; '.join(problems)}. A label map holds one whole "
            f"number per voxel, 0 (background) to {MAX_LABEL_VALUE}: save it as an integer labelmap "
            "(e.g. uint8 or uint16).",
        )
    return label


def label_value_problems(array: np.ndarray) -> List[str]:
    """Why ``array``'s values are not class numbers (non-finite, fractional, negative, above 65535); empty
    if they are. Scanned in blocks of at most 16 M voxels, so a float label needs no full-size temporaries."""
    if array.dtype.kind == "c":
        return ["it has complex values"]
    if array.dtype.kind not in "fiub":
        return [f"its voxels are of type {array.dtype}"]
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
    step = max(1, (1 << 24) // max(1, rows.shape[1]))
    counts = {"nonfinite": 0, "fractional": 0, "negative": 0, "above": 0}
    example: Optional[float] = None
    lowest = highest = None
    for start in range(0, rows.shape[0], step):
        block = rows[start:start + step]
        if block.dtype.kind == "f":
            finite = np.isfinite(block)
            counts["nonfinite"] += block.size - int(np.count_nonzero(finite))
            values = block[finite] if counts["nonfinite"] else block
            fractional = values != np.floor(values)
            found = int(np.count_nonzero(fractional))
            if found and example is None:
                example = float(values[fractional].ravel()[0])
            counts["fractional"] += found
        else:
            values = block
        if values.size == 0:
            continue
        low, high = values.min(), values.max()
        if low < 0:
            counts["negative"] += int(np.count_nonzero(values < 0))
            lowest = low if lowest is None else min(lowest, low)
        if high > MAX_LABEL_VALUE:
            counts["above"] += int(np.count_nonzero(values > MAX_LABEL_VALUE))
            highest = high if highest is None else max(highest, high)
    problems = []
    if counts["nonfinite"]:
        problems.append(f"{counts['nonfinite']} voxel(s) are not finite numbers (NaN or infinity)")
    if counts["fractional"]:
        problems.append(f"{counts['fractional']} voxel(s) have fractional values (e.g. {example:g})")
    if counts["negative"]:
        problems.append(f"{counts['negative']} voxel(s) are negative (lowest {float(lowest):g})")
    if counts["above"]:
        problems.append(f"{counts['above']} voxel(s) are above {MAX_LABEL_VALUE} (highest {float(highest):g})")
    return problems


def _reader_reason(error: RuntimeError) -> str:
    """SimpleITK's reason without the paths it names (the server's temporary file, ITK's source files)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    text = re.sub(r"^sitk::ERROR:\s*", "", text)
    text = re.sub(r"\"[^\"]*\"|'[^']*'|\S*[/\\]\S*", "the file", text)
    return text.strip() or "not an image SimpleITK can decode"


def on_image_grid(label: CheckedLabel, image: Grid, image_id: str, label_ext: str, folder: str) -> Optional[str]:
    """Check the label's grid against the image's; returns the path of a copy to store instead, or None to
    store the upload as sent.

    - the same size and physical grid (within the tolerances above): stored as sent;
    - the same size and no geometry at all (spacing 1, origin 0, identity direction: a client that wrote the
      voxels alone): MONAI Label pairs labels with images voxel by voxel, so the label is stored with the
      image's spacing, origin and direction (written to a new file in ``folder``, in the upload's format);
    - another size, or another real geometry: :class:`InvalidRequestError` (HTTP 422). Resampling it would change what the annotator drew.
    """
    grid = Grid.of(label.image)
    if grid.size != image.size:
        raise InvalidRequestError(
            f"The label has size {list(grid.size)} but image '{image_id}' has {list(image.size)}: save a label in "
            "the image's geometry.",
        )
    differences = grid.differences(image)
    if not differences:
        return None
    if not grid.is_default():
        raise InvalidRequestError(
            f"The label's {'; '.join(differences)} differ from those of image '{image_id}', so it would not overlay "
            "the image. Save the label on the image's grid (same spacing, origin and direction; in 3D Slicer, "
            "export the segmentation with this image as the reference geometry).",
        )
    if label_ext.lower() not in GEOMETRY_FORMATS:
        return None  # a format without geometry (PNG, TIFF): nothing to copy into it
    placed = label.image
    if grid.dimension != image.dimension:
        voxels = sitk.GetArrayFromImage(label.image).reshape(image.size[: image.dimension][::-1])
        placed = sitk.GetImageFromArray(voxels)
    placed.SetSpacing(tuple(image.spacing))
    placed.SetOrigin(tuple(image.origin))
    placed.SetDirection(tuple(image.direction.ravel()))
    path = os.path.join(folder, f"label{label_ext}")
    sitk.WriteImage(placed, path, useCompression=label.file.compressed or label_ext.lower().endswith(".gz"))
    logger.info("Label for image %s had no geometry: stored with the image's spacing, origin and direction", image_id)
    return path
