"""Write the sample images as DICOM series, the way a PACS holds them, for Orthanc and the OHIF viewer.

    python sample-data/build_dicom.py [--out sample-data/dicom]

- phantom_ct/: the asymmetric CT phantom of build_datastore.py as a CT series (LPS, anisotropic spacing).
- mni_mr/: the MNI152 T1 template (downsampled ×2) as an MR series, stored with its RAS-flipped direction.

Both share one patient and one study, so OHIF shows a CT and an MR series side by side. UIDs are derived
from a fixed seed: rebuilding gives the same UIDs and Orthanc sees the same instances. Nothing is downloaded.
``write_series`` is also what the tests use to make broken series (a missing slice, uneven spacing), and
``write_transcoded_copy`` / ``write_stack_of`` store series as a PACS holds them: compressed (JPEG 2000,
RLE, deflate, big-endian), or built from a scanner vendor's compressed instance.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_datastore  # noqa: E402  (the sibling script: the phantom and the MNI files)

logger = logging.getLogger("sample-dicom")
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's prefix for generated UIDs
STORAGE_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}


def uid(*parts: str) -> str:
    """A deterministic UID from ``parts``."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["medicosam-sample", *parts])


def write_series(
    image: sitk.Image,
    out: Path,
    modality: str,
    series_description: str,
    study_uid: str,
    series_number: int,
    patient_id: str = "MEDICOSAM-SAMPLE",
    slice_positions: Optional[Sequence[float]] = None,
    skip_slices: Sequence[int] = (),
    bits_stored: int = 16,
    signed: bool = True,
) -> str:
    """Write a 3D ``image`` as one single-frame instance per k slice; returns the SeriesInstanceUID.

    ``slice_positions`` (mm along the slice normal, one per slice) and ``skip_slices`` exist to make broken
    series for tests: uneven spacing and missing slices. ``bits_stored`` / ``signed`` describe the stored
    values (8-bit unsigned for JPEG baseline, 12-bit for JPEG extended); values that do not fit are refused,
    never clipped.
    """
    out.mkdir(parents=True, exist_ok=True)
    series_uid = uid(study_uid, series_description, str(series_number))
    array = sitk.GetArrayFromImage(image)  # [k, j, i]: one row-major (rows = j, columns = i) frame per slice
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = image.GetSpacing()
    origin = np.array(image.GetOrigin(), dtype=float)
    values = _stored_values(array, bits_stored, signed)
    for k in range(array.shape[0]):
        if k in skip_slices:
            continue
        offset = spacing[2] * k if slice_positions is None else slice_positions[k]
        position = origin + direction[:, 2] * offset
        ds = _instance(modality, series_uid, study_uid, uid(series_uid, str(k)), patient_id)
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (j), column spacing (i)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.FrameOfReferenceUID = uid(study_uid, "frame-of-reference")
        ds.Rows, ds.Columns = values.shape[1], values.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored = values.dtype.itemsize * 8, bits_stored
        ds.HighBit, ds.PixelRepresentation = bits_stored - 1, int(signed)
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(values[k]).tobytes()
        ds.save_as(out / f"{k + 1:04d}.dcm", write_like_original=False)
    return series_uid


def _stored_values(array: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2 ** bits_stored - 1)
    values = np.round(array)
    if values.min() < low or values.max() > high:
        raise ValueError(f"values {values.min()}..{values.max()} do not fit in {bits_stored} bits "
                         f"({'signed' if signed else 'unsigned'})")
    dtype = {(8, True): np.int8, (8, False): np.uint8, (16, True): np.int16, (16, False): np.uint16}
    return values.astype(dtype[(8 if bits_stored <= 8 else 16, signed)])


# Syntaxes written here because Orthanc's DCMTK codecs cannot encode them (JPEG 2000, RLE), or simply to
# have them without a PACS (deflate, big-endian). JPEG and JPEG-LS are left to Orthanc's transcoder.
LOCAL_TRANSCODINGS = (JPEG2000Lossless, JPEG2000, RLELossless, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)


def write_transcoded_copy(
    source: Path,
    out: Path,
    transfer_syntax: str,
    series_description: str,
    series_number: int,
    jpeg2000_ratio: float = 10.0,
) -> str:
    """Copy a single-frame series written by :func:`write_series` as a new series stored in
    ``transfer_syntax`` (one of :data:`LOCAL_TRANSCODINGS`); returns its SeriesInstanceUID.

    JPEG 2000 (``JPEG2000`` = lossy, at ``jpeg2000_ratio``:1) is encoded with OpenJPEG (pylibjpeg-openjpeg),
    RLE with pydicom's encoder; deflate and big-endian only change how pydicom writes the dataset.
    OpenJPEG's encoder uses six wavelet levels: frames need 32 pixels or more on each side.
    """
    if transfer_syntax not in LOCAL_TRANSCODINGS:
        raise ValueError(f"{transfer_syntax} is not written locally; use one of {LOCAL_TRANSCODINGS}")
    out.mkdir(parents=True, exist_ok=True)
    series_uid = None
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(str(path))
        if series_uid is None:
            series_uid = uid(str(ds.StudyInstanceUID), series_description, str(series_number))
        pixels = ds.pixel_array
        ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber = series_uid, series_description, series_number
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(series_uid, str(ds.InstanceNumber))
        if transfer_syntax in (JPEG2000Lossless, JPEG2000):
            _encode_jpeg2000(ds, pixels, None if transfer_syntax == JPEG2000Lossless else jpeg2000_ratio)
        elif transfer_syntax == RLELossless:
            ds.compress(RLELossless)
        elif transfer_syntax == ExplicitVRBigEndian:
            ds.is_little_endian = False
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.save_as(out / path.name, write_like_original=False)
    if series_uid is None:
        raise ValueError(f"{source} holds no .dcm files")
    return series_uid


def _encode_jpeg2000(ds: FileDataset, pixels: np.ndarray, ratio: Optional[float]) -> None:
    from openjpeg.utils import PhotometricInterpretation, encode_array  # only needed for this syntax

    codestream = encode_array(
        pixels, bits_stored=int(ds.BitsStored), photometric_interpretation=PhotometricInterpretation.MONOCHROME2,
        compression_ratios=[ratio] if ratio else None,
    )
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    if ratio:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{ratio:.1f}"
        ds.LossyImageCompressionMethod = "ISO_15444_1"


def write_stack_of(
    instances: Sequence[Path],
    out: Path,
    spacing: float,
    study_uid: str,
    series_description: str,
    series_number: int,
) -> str:
    """A series whose slice k carries the pixel data of ``instances[k]`` byte for byte (a scanner vendor's
    compressed frame stays as the vendor encoded it, in its transfer syntax), ``spacing`` mm apart along the
    first instance's slice normal, with fresh UIDs; file names run against slice order. Returns the
    SeriesInstanceUID."""
    out.mkdir(parents=True, exist_ok=True)
    series_uid = uid(study_uid, series_description, str(series_number))
    first = pydicom.dcmread(str(instances[0]), stop_before_pixels=True)
    cosines = np.array([float(v) for v in first.ImageOrientationPatient])
    origin = np.array([float(v) for v in first.ImagePositionPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    for k, instance in enumerate(instances):
        ds = pydicom.dcmread(str(instance))
        ds.ImageOrientationPatient = first.ImageOrientationPatient
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + normal * spacing * k]
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = series_description, series_number, k + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(series_uid, str(k))
        ds.save_as(out / f"{len(instances) - k:04d}.dcm", write_like_original=True)
    return series_uid


def write_enhanced_copy(source: Path, out: Path, series_description: str, series_number: int) -> str:
    """The single-frame series in ``source`` as one Legacy Converted Enhanced CT/MR instance (highdicom):
    all slices as frames, positions per frame. Returns the SeriesInstanceUID."""
    import highdicom as hd

    legacy = [pydicom.dcmread(str(path)) for path in sorted(source.glob("*.dcm"))]
    modality = str(legacy[0].Modality)
    converter = {"CT": hd.legacy.LegacyConvertedEnhancedCTImage, "MR": hd.legacy.LegacyConvertedEnhancedMRImage}[modality]
    series_uid = uid(str(legacy[0].StudyInstanceUID), series_description, str(series_number))
    enhanced = converter(legacy, series_instance_uid=series_uid, series_number=series_number,
                         sop_instance_uid=uid(series_uid, "1"), instance_number=1)
    enhanced.SeriesDescription = series_description
    out.mkdir(parents=True, exist_ok=True)
    enhanced.save_as(out / "enhanced.dcm")
    return series_uid


def write_text_report(out: Path, study_uid: str, patient_id: str = "MEDICOSAM-SAMPLE") -> str:
    """A one-instance series without pixels (a basic text SR), to test how a non-image series is refused."""
    out.mkdir(parents=True, exist_ok=True)
    series_uid = uid(study_uid, "report")
    ds = _instance("SR", series_uid, study_uid, uid(series_uid, "1"), patient_id,
                   sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "Report", 99, 1
    ds.save_as(out / "report.dcm", write_like_original=False)
    return series_uid


def _instance(modality: str, series_uid: str, study_uid: str, sop_uid: str, patient_id: str,
              sop_class: Optional[str] = None) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class or STORAGE_CLASSES[modality]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.Modality = modality
    ds.PatientName, ds.PatientID = "MedicoSAM^Sample", patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName, ds.Manufacturer = "", "MedicoSAM Label sample data"
    return ds


def mni_mr_image() -> sitk.Image:
    """The MNI T1 template downsampled ×2, in integer intensities 0..1000 as an MR series stores them."""
    t1 = sitk.ReadImage(str(build_datastore.nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")), sitk.sitkFloat32)
    t1 = sitk.Shrink(t1, [2, 2, 2])
    peak = float(np.percentile(sitk.GetArrayViewFromImage(t1), 99.5)) or 1.0
    return sitk.Clamp(t1 * (1000.0 / peak), lowerBound=0.0, upperBound=1000.0)


def build(out: Path) -> Path:
    study_uid = uid("study")
    if not (out / "phantom_ct").exists():
        logger.info("writing phantom_ct")
        write_series(build_datastore.make_ct_phantom(), out / "phantom_ct", "CT", "Phantom CT", study_uid, 1)
    if not (out / "mni_mr").exists():
        logger.info("writing mni_mr")
        write_series(mni_mr_image(), out / "mni_mr", "MR", "MNI152 T1", study_uid, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "dicom")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out))


if __name__ == "__main__":
    main()
