"""PNG, JPEG and TIFF files → voxels ``[i, j, k(, channel)]``: the 2D images MedicoSAM was trained on as much as CT.

Two channels (a microscopy TIFF: nuclear and membrane) become CellSAM's input, a blank channel followed by
the two (:func:`.channels.image_channels`); more than three (four only as RGBA samples) are refused.

Pixels are read by Pillow (PNG, JPEG) and tifffile (TIFF), which keep what SimpleITK loses (it drops the
alpha of a grey PNG and the second channel of a two-channel TIFF). A picture has no patient geometry: rows
run down the screen and columns across, as the file stores them, which is how Slicer and every image viewer
show it (EXIF orientation is not applied: a client displays the stored grid, and a click must land on the
pixel it shows). Spacing, in mm, is what ITK reads from the same file where it reads one (JPEG: 25.4 / dpi),
or the TIFF resolution tags, else 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import ImageReadError
from .channels import image_channels

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# tifffile axis codes: which stack frames in time, which stacks planes in space, which are channels.
_TIME_AXES = "T"
_STACK_AXES = "ZQIR"
_CHANNEL_AXES = "CS"
# Values (pixels x samples x frames) one picture may hold, as for DICOM: a 20k x 20k grey image or a 11k x 11k
# colour photograph fits; beyond that a file is a slide pyramid, or a small compressed file that would unpack
# to gigabytes.
MAX_VALUES = 400_000_000


@dataclass(frozen=True)
class Picture:
    """Voxels ``[i, j, k]`` or ``[i, j, k, channel]`` and how to read the third axis."""

    array: np.ndarray
    spacing: Tuple[float, float, float]
    layout: str  # "plane", "cine" (k is time) or "volume" (k is space)


def is_picture(path: Path) -> bool:
    return path.name.lower().endswith(PICTURE_SUFFIXES)


def read_picture(path: Path, palette_indices: bool = False) -> Picture:
    """Read a PNG, JPEG or TIFF file; :class:`ImageReadError` names what cannot be read or mapped.
    ``palette_indices``: a palette PNG keeps its indices (a label map saved with a colour table) instead of
    the colours they stand for."""
    if path.name.lower().endswith((".tif", ".tiff")):
        frames, layout, spacing = _read_tiff(path)
    else:
        frames, layout, spacing = _read_with_pillow(path, palette_indices), "plane", _itk_spacing(path)
    if frames.ndim == 4 and frames.shape[-1] > 3:
        raise ImageReadError(
            f"{path.name} has {frames.shape[-1]} channels: one (grey), two (nuclear + membrane), three (RGB) or "
            "four (RGBA, alpha ignored) can be given to the model. Save the channels to segment as their own file."
        )
    frames = image_channels(frames, path.name)
    if np.iscomplexobj(frames):
        raise ImageReadError(f"{path.name} holds complex values; save the magnitude as a real-valued image.")
    if frames.dtype == bool:
        frames = frames.astype(np.uint8)
    order = (2, 1, 0, 3) if frames.ndim == 4 else (2, 1, 0)
    return Picture(np.ascontiguousarray(frames.transpose(order)), spacing, layout)


def _read_with_pillow(path: Path, palette_indices: bool = False) -> np.ndarray:
    """(1, rows, columns) grey or (1, rows, columns, 3) RGB, alpha dropped, palettes looked up."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height * len(image.getbands()) > MAX_VALUES:
                raise ImageReadError(
                    f"{path.name} is {image.width} x {image.height} pixels ({'+'.join(image.getbands())}), more than "
                    f"{MAX_VALUES:,} values: too large to open as one image. Save the part to segment as its own file.")
            image.load()
            mode = image.mode
            if mode == "P" and not palette_indices:
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif mode == "1":
                image = image.convert("L")
            pixels = np.asarray(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:  # Pillow's own limit, checked as the header is read
        raise ImageReadError(f"{path.name} is too large to open as one image ({error}). Save the part to segment "
                             "as its own file.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"Cannot read image {path.name}: {error}. Replace it with a complete copy.") from None
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):  # LA, RGBA: the alpha channel is not a picture
        pixels = pixels[..., :-1]
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return pixels[None]


def _itk_spacing(path: Path) -> Tuple[float, float, float]:
    """The spacing ITK (and so 3D Slicer) reads from this file, so labels overlay it there."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        spacing = [float(s) for s in reader.GetSpacing()][:2]
    except RuntimeError:
        spacing = [1.0, 1.0]
    return tuple(s if np.isfinite(s) and s > 0 else 1.0 for s in spacing) + (1.0,)  # type: ignore[return-value]


def _read_tiff(path: Path) -> Tuple[np.ndarray, str, Tuple[float, float, float]]:
    """(frames, rows, columns[, channels]), whether frames are time or space, and the spacing in mm."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tiff:
            series = tiff.series[0]
            axes, shape = series.axes, series.shape
            if int(np.prod(shape)) > MAX_VALUES:
                raise ImageReadError(
                    f"{path.name} holds {' x '.join(map(str, shape))} values, more than {MAX_VALUES:,}: too large to "
                    "open as one image. Save the part to segment as its own file.")
            pixels = series.asarray()
            spacing = _tiff_spacing(tiff.pages[0])
            alpha = _alpha_samples(tiff.pages[0])
    except ImageReadError:
        raise
    except Exception as error:  # tifffile raises many types for damaged files; each is a bad file, not a bug
        raise ImageReadError(f"Cannot read TIFF {path.name}: {error}. Replace it with a complete copy.") from None
    frames, layout = _arrange(pixels, axes, path)
    if alpha and frames.ndim == 4 and "S" in axes:  # extra samples marked as alpha are not a picture
        frames = frames[..., : frames.shape[-1] - alpha]
    if frames.ndim == 4 and "S" in axes and frames.shape[-1] == 4:
        frames = frames[..., :3]  # RGB and a fourth sample of unspecified meaning, as every viewer shows it
    return frames, layout, spacing


def _alpha_samples(page) -> int:
    """How many of a TIFF page's extra samples are alpha (associated or unassociated)."""
    extra = getattr(page, "extrasamples", None) or ()
    return sum(1 for value in extra if int(value) in (1, 2))


def _arrange(pixels: np.ndarray, axes: str, path: Path) -> Tuple[np.ndarray, str]:
    """Put tifffile's axes in the order (frames, Y, X[, channel]); one stacking axis at most."""
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{path.name} has axes {axes!r}: a TIFF with rows (Y) and columns (X) is needed.")
    # Axes of length 1 say nothing; drop them so 'TZCYX' ImageJ files with one Z read as 'TCYX'.
    keep = [a for a, n in zip(axes, pixels.shape) if n > 1 or a in "YX"]
    pixels = pixels.reshape([n for a, n in zip(axes, pixels.shape) if n > 1 or a in "YX"])
    axes = "".join(keep)
    channels = [a for a in axes if a in _CHANNEL_AXES]
    stacks = [a for a in axes if a not in "YX" and a not in _CHANNEL_AXES]
    if len(channels) > 1 or len(stacks) > 1:
        raise ImageReadError(
            f"{path.name} has axes {axes!r} (shape {pixels.shape}): one image, a time series or a stack, with "
            "channels, can be opened. Save each stack, time point or channel group as its own file."
        )
    order = stacks + ["Y", "X"] + channels
    pixels = np.moveaxis(pixels, [axes.index(a) for a in order], range(len(order)))
    if not stacks:
        pixels = pixels[None]
    layout = "plane" if not stacks else ("cine" if stacks[0] in _TIME_AXES else "volume")
    return pixels, layout


def _tiff_spacing(page) -> Tuple[float, float, float]:
    """mm per pixel from XResolution/YResolution with an inch or centimetre unit; 1 otherwise."""
    per_mm = {2: 1 / 25.4, 3: 1 / 10.0}  # ResolutionUnit INCH, CENTIMETER
    unit = int(getattr(page.tags.get("ResolutionUnit"), "value", 1) or 1)

    def spacing(tag: str) -> Optional[float]:
        value = getattr(page.tags.get(tag), "value", None)
        if unit not in per_mm or not value:
            return None
        numerator, denominator = value if isinstance(value, tuple) else (value, 1)
        pixels_per_unit = numerator / denominator if denominator else 0
        return 1.0 / (pixels_per_unit * per_mm[unit]) if pixels_per_unit > 0 else None

    return spacing("XResolution") or 1.0, spacing("YResolution") or 1.0, 1.0
