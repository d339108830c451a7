"""Stored DICOM pixels → the picture a radiology viewer shows: what is bright for the reader is bright for the model.

A viewer does three things before a human looks at a greyscale image (PS3.4 N.2): the Modality LUT
(``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence; per frame in an enhanced instance), the
VOI (the first window or VOI LUT the header offers) and the polarity (``MONOCHROME1`` or a Presentation LUT
Shape ``INVERSE``: low values are white). Colour stays colour: YBR is converted to RGB once (a decoder that
already did it — JPEG 2000's ``YBR_ICT``/``YBR_RCT`` — is not second-guessed), planar and interleaved RGB
become the same array, palette colour is looked up. pydicom's own LUT and colour functions do each step;
this module decides which steps apply and refuses, naming the attribute, what cannot be shown honestly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixel_data_handlers.util import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
)

from ..errors import ImageReadError

GREY = ("MONOCHROME1", "MONOCHROME2")
# Colour spaces pixel_array returns unconverted, and what turns each into RGB.
YBR_TO_CONVERT = ("YBR_FULL", "YBR_FULL_422")
DECODED_AS_RGB = ("RGB", "YBR_ICT", "YBR_RCT")  # JPEG 2000 undoes its component transform while decoding


class PixelDataError(ImageReadError):
    """The pixel data of an instance cannot be shown as the header describes it (HTTP 422)."""


@dataclass(frozen=True)
class PresentedFrames:
    """The frames of one instance as a viewer presents them.

    ``frames`` is ``(frames, rows, columns)`` float32 for greyscale, ``(frames, rows, columns, 3)`` uint8 or
    uint16 RGB for colour. ``steps`` names what was applied, in order, for logs and tests."""

    frames: np.ndarray
    colour: bool
    steps: Tuple[str, ...]


def presented_frames(dataset: Dataset, *, voi: bool = True, name: str = "") -> PresentedFrames:
    """Decode ``dataset``'s pixels and present them; ``voi=False`` keeps modality values (HU for CT), as a
    volume needs for its own intensity policy."""
    what = name or f"instance {dataset.get('SOPInstanceUID', '?')}"
    photometric = _photometric(dataset, what)
    pixels = _decode(dataset, what)
    frames = pixels[None] if _frame_count(dataset) == 1 else pixels  # pydicom drops the axis of a lone frame
    if photometric in GREY:
        return _present_grey(frames, dataset, photometric, voi, what)
    return _present_colour(frames, dataset, photometric, what)


def _photometric(dataset: Dataset, what: str) -> str:
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    known = GREY + YBR_TO_CONVERT + DECODED_AS_RGB + ("PALETTE COLOR",)
    if photometric not in known:
        raise PixelDataError(
            f"{what} has photometric interpretation '{photometric or 'none'}', which is not one of "
            f"{', '.join(known)}: its pixels cannot be shown as the scanner meant. Export it as RGB or greyscale."
        )
    expected = 1 if photometric in GREY + ("PALETTE COLOR",) else 3
    if samples != expected:
        raise PixelDataError(f"{what} is {photometric} but has {samples} samples per pixel instead of {expected}: "
                             "its header contradicts its pixels. Export it again from the modality or PACS.")
    if "FloatPixelData" in dataset or "DoubleFloatPixelData" in dataset:
        if photometric not in GREY:
            raise PixelDataError(f"{what} stores colour as floating-point values, which no viewer presents; "
                                 "export it as 8- or 16-bit RGB.")
    elif photometric not in GREY and int(dataset.get("BitsAllocated", 8)) > 16:
        raise PixelDataError(f"{what} stores colour with {dataset.BitsAllocated} bits per sample; 8 or 16 bits "
                             "are shown. Export it as 8- or 16-bit RGB.")
    return photometric


def _frame_count(dataset: Dataset) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        raise PixelDataError(f"NumberOfFrames '{dataset.get('NumberOfFrames')}' is not a number.") from None


def _decode(dataset: Dataset, what: str) -> np.ndarray:
    _frame_count(dataset)
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise PixelDataError(f"{what} has no pixel data: it is not an image.")
    try:
        return dataset.pixel_array
    except Exception as error:  # pydicom and its decoders raise many types; each is a bad instance, not a bug
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        stored = f" (stored as {syntax.name})" if syntax is not None else ""
        raise PixelDataError(
            f"The pixel data of {what}{stored} cannot be decoded: {detail[:300]}. The instance is damaged, its "
            "frame count or size does not match its pixel data, or its compression is not supported: send it "
            "from the PACS again or export it uncompressed."
        ) from None


def _present_grey(frames: np.ndarray, dataset: Dataset, photometric: str, voi: bool, what: str) -> PresentedFrames:
    steps = []
    values, low, high, modality_step = _modality(frames, dataset)
    steps.append(modality_step)
    if voi:
        values, window = _voi(values, dataset, low, high)
        if window is not None:
            (low, high), step = window
            steps.append(step)
    inverse = str(dataset.get("PresentationLUTShape", "")).strip().upper() == "INVERSE"
    if photometric == "MONOCHROME1" or inverse:
        # One inversion whichever says so: PS3.3 C.8.11.6 makes a MONOCHROME1 radiograph carry INVERSE.
        values = (low + high) - values
        steps.append("MONOCHROME1 inverted" if photometric == "MONOCHROME1" else "Presentation LUT INVERSE")
    return PresentedFrames(frames=values.astype(np.float32), colour=False, steps=tuple(steps))


def _stored_range(dataset: Dataset) -> Tuple[float, float]:
    bits = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 16)) or 16)
    if int(dataset.get("PixelRepresentation", 0) or 0):
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _modality(frames: np.ndarray, dataset: Dataset) -> Tuple[np.ndarray, float, float, str]:
    """Modality values and the range they can take (for inversion); per frame in an enhanced instance."""
    low, high = _stored_range(dataset)
    if "FloatPixelData" in dataset or "DoubleFloatPixelData" in dataset:
        values = frames.astype(np.float64)
        return values, float(values.min()), float(values.max()), "float pixels"
    per_frame = _per_frame_rescale(dataset, len(frames))
    if per_frame is not None:
        slopes, intercepts = per_frame
        values = frames * slopes[:, None, None] + intercepts[:, None, None]
        ends = np.concatenate([low * slopes + intercepts, high * slopes + intercepts])
        return values, float(ends.min()), float(ends.max()), "rescale per frame (functional groups)"
    if dataset.get("ModalityLUTSequence"):
        bits = int(dataset.ModalityLUTSequence[0].LUTDescriptor[2])
        return apply_modality_lut(frames, dataset).astype(np.float64), 0.0, 2.0**bits - 1, "modality LUT"
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    values = frames.astype(np.float64) * slope + intercept
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return values, ends[0], ends[1], f"rescale {slope:g}x{intercept:+g}"


def _per_frame_rescale(dataset: Dataset, count: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Slopes and intercepts from an enhanced instance's Pixel Value Transformation macros, if it has them."""
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    items = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
    if not items and "PixelValueTransformationSequence" not in shared:
        return None

    def transform(item: Dataset) -> Dataset:
        for group in (item, shared):
            if group is not None and group.get("PixelValueTransformationSequence"):
                return group.PixelValueTransformationSequence[0]
        return Dataset()

    macros = [transform(item) for item in items] if len(items) == count else [transform(Dataset())] * count
    if not any("RescaleSlope" in m or "RescaleIntercept" in m for m in macros):
        return None
    slopes = np.array([float(m.get("RescaleSlope", 1) or 1) for m in macros])
    intercepts = np.array([float(m.get("RescaleIntercept", 0) or 0) for m in macros])
    return slopes, intercepts


def _voi(values: np.ndarray, dataset: Dataset, low: float, high: float):
    """The first VOI LUT or window, as pydicom applies it, and the output range; the values unchanged and
    None when the header has neither or its window cannot be used (a width of 0: shown unwindowed)."""
    if dataset.get("VOILUTSequence"):
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        table = apply_voi_lut(np.round(values).astype(np.int64), dataset, index=0, prefer_lut=True)
        return table.astype(np.float64), ((0.0, 2.0**bits - 1), "VOI LUT (first)")
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset or "PerFrameFunctionalGroupsSequence" in dataset:
        return values, None  # enhanced instances keep windows per frame (FrameVOILUTSequence): volumes only
    try:
        windowed = apply_voi_lut(values, dataset, index=0, prefer_lut=False)
    except (ValueError, TypeError, IndexError, AttributeError):  # a width below 1, an unparsable centre...
        return values, None
    function = str(dataset.get("VOILUTFunction", "LINEAR")).lower()
    return windowed, ((low, high), f"window (first, {function})")


def _present_colour(frames: np.ndarray, dataset: Dataset, photometric: str, what: str) -> PresentedFrames:
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(frames, dataset)
        except (ValueError, KeyError, AttributeError, IndexError) as error:
            raise PixelDataError(f"{what} is PALETTE COLOR but its palette cannot be applied ({error}). "
                                 "Export it as RGB.") from None
        return PresentedFrames(frames=rgb.astype(np.uint16 if rgb.dtype.itemsize > 1 else np.uint8), colour=True,
                               steps=("palette colour",))
    if photometric in YBR_TO_CONVERT:
        # pydicom leaves JPEG and uncompressed YBR in YCbCr (its handlers keep the stored colour space).
        rgb = convert_color_space(frames, photometric, "RGB")
        return PresentedFrames(frames=rgb, colour=True, steps=(f"{photometric} to RGB",))
    return PresentedFrames(frames=frames, colour=True, steps=("RGB",) if photometric == "RGB" else
                           (f"{photometric} decoded as RGB",))
