"""A folder of DICOM instances → one checked image series → a :class:`~medicosam_app.geometry.volume.Volume`.

A PACS holds what scanners send, and not every series is a volume. Before any voxel reaches the model the
series is checked: one series, image instances with pixels and a position, one orientation and matrix size,
and slices evenly spaced along the slice normal. Each refusal names what is wrong, where, and what to do.
Slices are ordered by position along ``row × column`` cosines, ascending, as ITK and the OHIF viewer
(cornerstone) both order them, so voxel ``[i, j, k]`` here is voxel ``[i, j, k]`` in the browser.

Instances are kept in the transfer syntax the PACS stores them in (JPEG 2000, JPEG-LS, JPEG, RLE, deflate,
big-endian...): GDCM, through SimpleITK, decodes them all, and an instance it cannot decode is named in a
:class:`DicomSeriesError` with its transfer syntax instead of failing the request with a stack trace.
Enhanced multi-frame images (one instance, per-frame positions) are refused with a message that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..errors import ImageReadError

# Modalities whose instances are not images of the patient (segmentations, reports, presentation states...).
NON_IMAGE_MODALITIES = {"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "PR", "KO", "DOC", "REG", "FID", "OT-REPORT"}
SPACING_TOLERANCE = 0.01  # relative; scanners write positions with a few decimals
# Attributes that only enhanced (functional-group) instances carry: their positions live per frame.
FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")


class DicomSeriesError(ImageReadError):
    """A series that cannot be read as one 3D image; the message says why and what to choose instead."""


@dataclass(frozen=True)
class DicomSeries:
    """The instances of one image series in slice order (k ascending along the slice normal)."""

    files: Tuple[Path, ...]
    headers: Tuple[Dataset, ...]  # read without pixel data

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].SeriesInstanceUID)

    @property
    def sop_instance_uids(self) -> List[str]:
        return [str(h.SOPInstanceUID) for h in self.headers]

    @property
    def frames(self) -> Tuple[Tuple[str, int], ...]:
        """Per slice k: the SOP instance UID and frame number (always 1 for classic slices) it comes from."""
        return tuple((uid, 1) for uid in self.sop_instance_uids)

    def datasets(self) -> List[Dataset]:
        """The full instances (pixels included), in slice order."""
        return [pydicom.dcmread(str(f)) for f in self.files]

    @property
    def transfer_syntaxes(self) -> List[str]:
        """The distinct transfer syntaxes the instances are stored in, as names (a PACS may mix them)."""
        return sorted({transfer_syntax_name(h) for h in self.headers})

    def to_sitk(self) -> sitk.Image:
        """The series as one image in slice order, pixels decoded by GDCM whatever their transfer syntax."""
        try:
            return _read_with_gdcm(self.files)
        except RuntimeError as error:
            raise self._decoding_error(error) from error

    def _decoding_error(self, error: RuntimeError) -> DicomSeriesError:
        """Name the first instance GDCM cannot decode (only looked for once the series has failed)."""
        what = _describe(self.headers[0])
        for position, (path, header) in enumerate(zip(self.files, self.headers), start=1):
            try:
                _read_with_gdcm((path,))
            except RuntimeError as single:
                return DicomSeriesError(
                    f"{what}: the pixel data of slice {position} of {len(self.files)} (SOP instance "
                    f"{header.get('SOPInstanceUID', '?')}), stored as {transfer_syntax_name(header)}, cannot be "
                    f"decoded ({_last_line(single)}). The instance is damaged or its compression is not supported: "
                    "send the series from the PACS again or export it uncompressed."
                )
        return DicomSeriesError(
            f"{what} ({', '.join(self.transfer_syntaxes)}) cannot be read as one image ({_last_line(error)})."
        )


def _read_with_gdcm(files: Sequence[Path]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(f) for f in files])
    return reader.Execute()


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def transfer_syntax_name(header: Dataset) -> str:
    """``JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)``: how an instance is stored, for messages."""
    meta = getattr(header, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if not uid:
        return "an unknown transfer syntax"
    uid = UID(str(uid))
    return f"{uid.name} ({uid})" if uid.name != str(uid) else f"transfer syntax {uid}"


def _describe(header: Dataset) -> str:
    description = str(header.get("SeriesDescription", "")).strip()
    return f"series {header.get('SeriesInstanceUID', '?')}" + (f" ('{description}')" if description else "")


def _normal(header: Dataset) -> np.ndarray:
    cosines = np.array([float(v) for v in header.ImageOrientationPatient], dtype=float)
    return np.cross(cosines[:3], cosines[3:])


def check_series(headers: Sequence[Dataset], name: str = "", allow_colour: bool = False) -> List[int]:
    """Check that ``headers`` form one evenly spaced image series; return their order along the normal.
    ``allow_colour``: colour slices are accepted (:mod:`.image` presents them; GDCM's series reader would not)."""
    if not headers:
        raise DicomSeriesError(f"{name or 'The series'} has no DICOM instances.")
    first = headers[0]
    what = _describe(first)
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise DicomSeriesError(f"The folder mixes {len(series)} series; one series is needed.")
    modality = str(first.get("Modality", "")).upper()
    if modality in NON_IMAGE_MODALITIES:
        raise DicomSeriesError(
            f"{what} is a {modality} series, not an image: open a CT or MR image series instead."
        )
    _check_single_frame(headers, what, modality)
    missing = [h for h in headers if "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h or "Rows" not in h]
    if missing:
        raise DicomSeriesError(
            f"{what} ({modality or 'no modality'}) has {len(missing)} of {len(headers)} instances without image "
            "pixels or patient position: it is not a cross-sectional image; open a CT or MR series instead."
        )
    colour = sorted({int(h.get("SamplesPerPixel", 1) or 1) for h in headers} - {1})
    if colour and not allow_colour:
        raise DicomSeriesError(
            f"{what} holds colour images ({colour[0]} samples per pixel, "
            f"{headers[0].get('PhotometricInterpretation', '?')}): open a greyscale CT or MR series instead."
        )
    shapes = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(shapes) > 1:
        raise DicomSeriesError(f"{what} mixes matrix sizes {sorted(shapes)}: its slices do not form one volume.")
    orientations = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise DicomSeriesError(f"{what} mixes slice orientations (a localizer or a tilted stack?): choose a series of parallel slices.")
    normal = _normal(first)
    positions = np.array([np.dot([float(v) for v in h.ImagePositionPatient], normal) for h in headers])
    order = np.argsort(positions, kind="stable")
    if len(headers) > 1:
        _check_spacing(positions[order], what)
    return [int(i) for i in order]


def _check_single_frame(headers: Sequence[Dataset], what: str, modality: str) -> None:
    """Refuse instances that hold several frames. This runs before the position checks: an enhanced
    instance has no top-level ``ImagePositionPatient`` (its positions are per frame), and "not a
    cross-sectional image" would be the wrong reason."""
    enhanced = [h for h in headers if any(group in h for group in FUNCTIONAL_GROUPS)]
    if enhanced:
        first = enhanced[0]
        frames = int(first.get("NumberOfFrames", 1) or 1)
        sop_class = UID(str(first.get("SOPClassUID", ""))).name or "enhanced image"
        raise DicomSeriesError(
            f"{what}: enhanced multi-frame {modality or 'image'} is not supported: it is stored as "
            f"{len(enhanced)} {sop_class} instance(s) ({frames} frame(s) in the first) whose slice positions are "
            "stored per frame. Export the series from the scanner or PACS as classic single-frame images "
            "(one instance per slice)."
        )
    if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
        raise DicomSeriesError(f"{what} holds multi-frame instances; export it as single-frame slices.")


def _check_spacing(sorted_positions: np.ndarray, what: str) -> None:
    gaps = np.diff(sorted_positions)
    if np.any(gaps < 1e-3):
        at = float(sorted_positions[int(np.argmin(gaps))])
        raise DicomSeriesError(f"{what} has two slices at the same position ({at:.2f} mm along the normal): "
                               "it holds duplicates or several stacks; choose a single-stack series.")
    step = float(np.median(gaps))
    off = np.abs(gaps - step) > SPACING_TOLERANCE * step
    if not off.any():
        return
    ratios = gaps[off] / step
    if np.all(np.abs(ratios - np.round(ratios)) < 0.05) and np.all(np.round(ratios) >= 2):
        lost = int(np.sum(np.round(ratios) - 1))
        where = int(np.flatnonzero(off)[0])
        raise DicomSeriesError(
            f"{what} is missing {lost} slice(s): the spacing is {step:.2f} mm but there is a gap of "
            f"{gaps[where]:.2f} mm after the slice at {sorted_positions[where]:.2f} mm. Send the complete series "
            "from the scanner or PACS again."
        )
    raise DicomSeriesError(
        f"{what} has uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm): it cannot be read as "
        "one volume. Resample it to even spacing or choose another series."
    )


def read_series_folder(folder: Path) -> DicomSeries:
    """Read and check the DICOM instances in ``folder`` (files that are not DICOM are ignored)."""
    files, headers = [], []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            header = pydicom.dcmread(str(path), stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        files.append(path)
        headers.append(header)
    order = check_series(headers, name=Path(folder).name)
    return DicomSeries(files=tuple(files[i] for i in order), headers=tuple(headers[i] for i in order))
