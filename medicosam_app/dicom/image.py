"""A folder of DICOM instances → one image in one of three shapes: a 3D volume, a 2D plane, or 2D + time.

What a PACS holds decides the shape, not the modality's name:

- **volume**: classic single-frame slices with patient positions (CT, MR, PT...) read and checked by
  :mod:`.series` and decoded by GDCM as before, or one *enhanced* multi-frame instance whose frames are placed
  by their functional groups (:mod:`.enhanced`), in the same slice order and the same ITK geometry;
- **plane**: one single-frame image without a patient position (a radiograph CR/DX/MG/IO/PX, a photograph
  ES/XC/OP, a secondary capture, one OCT B-scan);
- **cine**: one multi-frame instance that is not enhanced (an ultrasound clip, an XA run, a multi-frame
  secondary capture): frames are the third axis, in stored order, with the frame time from the header;
- **stack**: several single-frame images without positions in one series (a PA and a lateral chest film):
  each is its own picture, ordered by InstanceNumber; they are not neighbours in space or time.

Pixels of planes, clips and stacks are presented as a viewer shows them (:mod:`.pixels`: modality LUT,
first VOI, MONOCHROME1, colour kept); volumes keep modality values (HU) for the intensity policy. A 2D image
has no patient geometry: voxel ``[i, j, k]`` is column ``i``, row ``j`` of frame ``k`` exactly as stored, its
spacing in mm from PixelSpacing, ImagerPixelSpacing (over the estimated magnification) or the ultrasound
region calibration, else 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .enhanced import enhanced_geometry, frames_have_positions, is_enhanced
from .pixels import presented_frames
from .series import NON_IMAGE_MODALITIES, DicomSeries, DicomSeriesError, _describe, check_series

LAYOUTS = ("volume", "plane", "cine", "stack")
MAX_PIXELS = 400_000_000  # values of one image (all frames, all samples): a 10k x 10k colour photograph fits


@dataclass(frozen=True)
class DicomImage:
    """Voxels ``[i, j, k]`` (grey, float32 or the stored integers) or ``[i, j, k, 3]`` (RGB) with ITK geometry.

    ``frames`` names, for each k, the SOP instance UID and the 1-based frame number it came from, which is
    what a DICOM SEG must reference. ``steps`` says how the pixels were presented (for logs and ``/info``).
    """

    array: np.ndarray
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: np.ndarray
    layout: str
    frames: Tuple[Tuple[str, int], ...]
    frame_time_ms: Optional[float] = None
    modality: str = ""
    spacing_source: str = ""
    steps: Tuple[str, ...] = field(default=())
    series: Optional[DicomSeries] = None  # a classic volume: its checked series
    files: Tuple[Path, ...] = ()  # the instances, in the order a DICOM SEG lists them as its sources
    series_uid: str = ""

    def datasets(self) -> List[Dataset]:
        """The source instances (pixels included), in ``files`` order: what a DICOM SEG is made over."""
        return [pydicom.dcmread(str(f)) for f in self.files]

    def to_sitk(self) -> sitk.Image:
        colour = self.array.ndim == 4
        order = (2, 1, 0, 3) if colour else (2, 1, 0)
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array.transpose(order)), isVector=colour)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(np.asarray(self.direction, float).ravel()))
        return image


def read_dicom_folder(folder: Path) -> DicomImage:
    """Read the DICOM instances in ``folder`` (other files are ignored) as one image; :class:`DicomSeriesError`
    (HTTP 422) says why a folder is not one image and what to choose instead."""
    files, headers = [], []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            header = pydicom.dcmread(str(path), stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
            continue
        files.append(path)
        headers.append(header)
    return read_dicom_files(files, headers, name=Path(folder).name)


def read_dicom_files(files: Sequence[Path], headers: Optional[Sequence[Dataset]] = None, name: str = "") -> DicomImage:
    """One image from the given instances (their headers, if already read, spare a second read)."""
    files = list(files)
    headers = list(headers) if headers is not None else [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
    if not headers:
        raise DicomSeriesError(f"{name or 'The series'} has no DICOM instances.")
    what = _describe(headers[0])
    modality = str(headers[0].get("Modality", "")).upper()
    if len({str(h.get("SeriesInstanceUID", "")) for h in headers}) > 1:
        raise DicomSeriesError("The folder mixes several series; one series is needed.")
    if modality in NON_IMAGE_MODALITIES or not any("Rows" in h for h in headers):
        raise DicomSeriesError(f"{what} is a {modality or 'non-image'} series, not an image: open an image series instead.")
    without = [i for i, h in enumerate(headers) if "Rows" not in h or "Columns" not in h or "SOPInstanceUID" not in h]
    if without:
        raise DicomSeriesError(
            f"{what}: {len(without)} of {len(headers)} instances ({files[without[0]].name} first) have no Rows, "
            "Columns or SOPInstanceUID: they are not images. Send the series again without them.")
    kinds = {_is_colour(h) for h in headers}
    if len(kinds) > 1:
        raise DicomSeriesError(
            f"{what} mixes greyscale and colour instances: one image cannot be both. Send them as separate series.")
    tiled = [h for h in headers if _is_tiled(h)]
    if tiled:
        first = tiled[0]
        raise DicomSeriesError(
            f"{what} is a tiled whole-slide image ({int(first.TotalPixelMatrixColumns)} x "
            f"{int(first.TotalPixelMatrixRows)} pixels in {_frame_count(first)} tiles): its frames are tiles of one "
            "picture, not a clip, and a slide is not opened here yet. Export the region to segment as a PNG or "
            "TIFF and open that.")
    enhanced = [i for i, h in enumerate(headers) if _is_enhanced_volume(h, modality)]
    multi = [i for i, h in enumerate(headers) if _frame_count(h) > 1 and i not in enhanced]
    if enhanced:
        if len(headers) > 1:
            raise DicomSeriesError(
                f"{what} holds {len(headers)} instances, {len(enhanced)} of them enhanced multi-frame: one enhanced "
                "instance per series can be opened. Choose the series of one acquisition, or export each as its own series.")
        return _enhanced_volume(files[0], what, modality)
    if multi:
        if len(headers) > 1:
            raise DicomSeriesError(
                f"{what} holds {len(headers)} instances, {len(multi)} of them multi-frame clips: one clip per series "
                "can be opened. Send each clip as its own series.")
        return _clip(files[0], what, modality)
    positioned = all("ImagePositionPatient" in h and "ImageOrientationPatient" in h for h in headers)
    if positioned and (len(headers) > 1 or modality in ("CT", "MR", "PT", "NM")):
        return _classic_volume(files, headers, what, modality)
    return _pictures(files, headers, what, modality)


def _is_enhanced_volume(header: Dataset, modality: str) -> bool:
    """A multi-frame instance whose frames are slices placed in space by functional groups: an enhanced CT/MR/PET
    (even one whose groups were stripped, then refused as a volume without geometry rather than shown as a
    clip), a breast tomosynthesis, an enhanced 3D ultrasound or X-ray angiography volume. Enhanced XA/XRF/US
    clips carry functional groups too, without plane positions: their frames are time."""
    name = UID(str(header.get("SOPClassUID", ""))).name
    if re.search(r"Enhanced (CT|MR|PET)", name):
        return True
    return is_enhanced(header) and (modality in ("CT", "MR", "PT") or frames_have_positions(header))


def _is_colour(header: Dataset) -> bool:
    """Shown in colour: several samples per pixel, or a palette."""
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    return int(header.get("SamplesPerPixel", 1) or 1) > 1 or photometric == "PALETTE COLOR"


def _is_tiled(header: Dataset) -> bool:
    """A whole-slide (or other tiled) image: frames are tiles of a total pixel matrix larger than one frame."""
    try:
        total = (int(header.get("TotalPixelMatrixColumns", 0) or 0), int(header.get("TotalPixelMatrixRows", 0) or 0))
        frame = (int(header.get("Columns", 0) or 0), int(header.get("Rows", 0) or 0))
    except (TypeError, ValueError):
        return False
    return total[0] > frame[0] or total[1] > frame[1]


def _frame_count(header: Dataset) -> int:
    try:
        return max(1, int(header.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        raise DicomSeriesError(f"NumberOfFrames '{header.get('NumberOfFrames')}' is not a number.") from None


def _check_size(dataset: Dataset, what: str, count: int = 1) -> None:
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if rows < 1 or columns < 1:
        raise DicomSeriesError(f"{what} has {rows} rows and {columns} columns: it holds no picture.")
    if rows * columns * samples * _frame_count(dataset) * count > MAX_PIXELS:
        raise DicomSeriesError(
            f"{what} holds {_frame_count(dataset) * count} frame(s) of {columns} x {rows} pixels, more than "
            f"{MAX_PIXELS:,} values: too large to open as one image. Export a part of it.")


def _classic_volume(files: List[Path], headers: List[Dataset], what: str, modality: str) -> DicomImage:
    """Slices with positions: checked and ordered by :func:`.series.check_series`; grey ones decoded by GDCM
    (as every CT/MR before), colour ones presented here and placed with the same geometry."""
    order = check_series(headers, allow_colour=True)
    series = DicomSeries(files=tuple(files[i] for i in order), headers=tuple(headers[i] for i in order))
    uids = tuple((str(h.SOPInstanceUID), 1) for h in series.headers)
    if not any(_is_colour(h) for h in series.headers):
        image = series.to_sitk()
        array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
        return DicomImage(array, tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                          np.array(image.GetDirection(), float).reshape(3, 3), "volume", uids, modality=modality,
                          spacing_source="PixelSpacing and slice positions", series=series, files=series.files,
                          series_uid=series.series_uid)
    first = series.headers[0]
    _check_size(first, what, len(files))
    frames = [presented_frames(ds, voi=False, name=what).frames[0] for ds in series.datasets()]
    array = np.stack(frames, axis=0)  # (k, rows, columns, 3)
    row, column = (np.array([float(v) for v in first.ImageOrientationPatient])[:3],
                   np.array([float(v) for v in first.ImageOrientationPatient])[3:])
    normal = np.cross(row, column)
    along = [float(np.dot([float(v) for v in h.ImagePositionPatient], normal)) for h in series.headers]
    step = (along[-1] - along[0]) / (len(along) - 1) if len(along) > 1 else float(first.get("SliceThickness", 1) or 1)
    pixel = _positive(first.get("PixelSpacing")) or (1.0, 1.0)
    return DicomImage(np.ascontiguousarray(array.transpose(2, 1, 0, 3)), (pixel[1], pixel[0], step),
                      tuple(float(v) for v in first.ImagePositionPatient), np.column_stack([row, column, normal]),
                      "volume", uids, modality=modality, spacing_source="PixelSpacing and slice positions",
                      steps=("colour",), series=series, files=series.files, series_uid=series.series_uid)


def _enhanced_volume(path: Path, what: str, modality: str) -> DicomImage:
    dataset = pydicom.dcmread(str(path))
    geometry = enhanced_geometry(dataset)
    _check_size(dataset, what)
    shown = presented_frames(dataset, voi=False, name=what)
    frames = shown.frames[list(geometry.frame_order)]
    order = (2, 1, 0, 3) if frames.ndim == 4 else (2, 1, 0)
    uid = str(dataset.get("SOPInstanceUID", ""))
    return DicomImage(np.ascontiguousarray(frames.transpose(order)), geometry.spacing, geometry.origin,
                      geometry.direction, "volume", tuple((uid, i + 1) for i in geometry.frame_order),
                      modality=modality, spacing_source="functional groups", steps=shown.steps, files=(path,),
                      series_uid=str(dataset.get("SeriesInstanceUID", "")))


def _clip(path: Path, what: str, modality: str) -> DicomImage:
    dataset = pydicom.dcmread(str(path))
    _check_size(dataset, what)
    shown = presented_frames(dataset, voi=True, name=what)
    spacing, source = projection_spacing(dataset)
    uid = str(dataset.get("SOPInstanceUID", ""))
    image = _two_dimensional(shown.frames, spacing, "cine", tuple((uid, i + 1) for i in range(len(shown.frames))),
                             frame_time_ms(dataset), modality, source, shown.steps)
    return replace(image, files=(path,), series_uid=str(dataset.get("SeriesInstanceUID", "")))


def _pictures(files: List[Path], headers: List[Dataset], what: str, modality: str) -> DicomImage:
    order = sorted(range(len(headers)), key=lambda i: (_instance_number(headers[i]), str(files[i])))
    datasets = [pydicom.dcmread(str(files[i])) for i in order]
    sizes = {(int(d.Rows), int(d.Columns)) for d in datasets}
    if len(sizes) > 1:
        raise DicomSeriesError(
            f"{what} holds {len(datasets)} separate 2D images of different sizes "
            f"({', '.join(f'{c} x {r}' for r, c in sorted(sizes))}): one series must hold one picture, or pictures "
            "of one size. Send each image as its own series.")
    _check_size(datasets[0], what, len(datasets))
    shown = [presented_frames(d, voi=True, name=what) for d in datasets]
    frames = np.concatenate([s.frames for s in shown], axis=0)
    spacing, source = projection_spacing(datasets[0])
    layout = "plane" if len(datasets) == 1 else "stack"
    image = _two_dimensional(frames, spacing, layout, tuple((str(d.get("SOPInstanceUID", "")), 1) for d in datasets), None,
                             modality, source, shown[0].steps)
    return replace(image, files=tuple(files[i] for i in order), series_uid=str(datasets[0].get("SeriesInstanceUID", "")))


def _instance_number(header: Dataset) -> int:
    try:
        return int(header.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _two_dimensional(frames: np.ndarray, spacing: Tuple[float, float], layout: str, uids, frame_time, modality,
                     source, steps) -> DicomImage:
    """(frames, rows, columns[, 3]) → voxels [column, row, frame(, channel)] with an identity direction."""
    order = (2, 1, 0, 3) if frames.ndim == 4 else (2, 1, 0)
    return DicomImage(np.ascontiguousarray(frames.transpose(order)), (spacing[0], spacing[1], 1.0), (0.0, 0.0, 0.0),
                      np.eye(3), layout, uids, frame_time, modality, source, steps)


def _positive(value) -> Optional[Tuple[float, float]]:
    """A (row, column) spacing pair if both are positive numbers; real files carry "0.000\\0.000"."""
    try:
        pair = [float(v) for v in value] if value is not None else []
    except (TypeError, ValueError):
        return None
    return (pair[0], pair[1]) if len(pair) == 2 and min(pair) > 0 and all(np.isfinite(pair)) else None


def projection_spacing(dataset: Dataset) -> Tuple[Tuple[float, float], str]:
    """(column, row) spacing in mm of a 2D image and where it came from.

    PixelSpacing (calibrated in the patient) first; else ImagerPixelSpacing (at the detector) divided by the
    EstimatedRadiographicMagnificationFactor; else the ultrasound region calibration (PhysicalDelta in cm of
    the largest region calibrated in cm in both directions); else 1 mm, as a viewer shows an uncalibrated image.
    """
    calibrated = _positive(dataset.get("PixelSpacing")) or _positive(_shared_pixel_spacing(dataset))
    if calibrated:
        return (calibrated[1], calibrated[0]), "PixelSpacing"
    detector = _positive(dataset.get("ImagerPixelSpacing"))
    if detector:
        try:
            magnification = float(dataset.get("EstimatedRadiographicMagnificationFactor", 1) or 1)
        except (TypeError, ValueError):
            magnification = 1.0
        magnification = magnification if magnification > 0 else 1.0
        source = "ImagerPixelSpacing" + (f" / magnification {magnification:g}" if magnification != 1 else "")
        return (detector[1] / magnification, detector[0] / magnification), source
    regions = []
    for region in dataset.get("SequenceOfUltrasoundRegions") or []:
        try:
            if int(region.get("PhysicalUnitsXDirection", 0)) == 3 and int(region.get("PhysicalUnitsYDirection", 0)) == 3:
                dx, dy = abs(float(region.PhysicalDeltaX)), abs(float(region.PhysicalDeltaY))
                area = (int(region.RegionLocationMaxX1) - int(region.RegionLocationMinX0)) * \
                       (int(region.RegionLocationMaxY1) - int(region.RegionLocationMinY0))
                if dx > 0 and dy > 0:
                    regions.append((area, dx * 10.0, dy * 10.0))
        except (AttributeError, TypeError, ValueError):
            continue
    if regions:
        _, dx, dy = max(regions)
        return (dx, dy), "ultrasound region calibration"
    return (1.0, 1.0), "none (1 mm per pixel)"


def _shared_pixel_spacing(dataset: Dataset):
    """PixelSpacing of an enhanced clip, kept in its shared functional groups (Pixel Measures)."""
    shared = dataset.get("SharedFunctionalGroupsSequence") or []
    measures = shared[0].get("PixelMeasuresSequence") if shared else None
    return measures[0].get("PixelSpacing") if measures else None


def frame_time_ms(dataset: Dataset) -> Optional[float]:
    """Milliseconds between frames of a clip: FrameTime, else the mean of FrameTimeVector (its first entry is 0),
    else 1000 / CineRate; None when the header says nothing."""
    try:
        if dataset.get("FrameTime") not in (None, ""):
            value = float(dataset.FrameTime)
            return value if value > 0 else None
        vector = dataset.get("FrameTimeVector")
        if vector is not None and len(vector) > 1:
            steps = [float(v) for v in list(vector)[1:]]
            return float(np.mean(steps)) if np.mean(steps) > 0 else None
        if dataset.get("CineRate"):
            return 1000.0 / float(dataset.CineRate)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return None
