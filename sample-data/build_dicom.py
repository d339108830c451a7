"""Write the sample images as DICOM series, the way a PACS holds them, for Orthanc and the OHIF viewer.

    python sample-data/build_dicom.py [--out sample-data/dicom]

- phantom_ct/: the asymmetric CT phantom of build_datastore.py as a CT series (LPS, anisotropic spacing).
- mni_mr/: the MNI152 T1 template (downsampled ×2) as an MR series, stored with its RAS-flipped direction.

Both share one patient and one study, so OHIF shows a CT and an MR series side by side. UIDs are derived
from a fixed seed: rebuilding gives the same UIDs and Orthanc sees the same instances. Nothing is downloaded.
``write_series`` is also what the tests use to make broken series (a missing slice, uneven spacing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

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
) -> str:
    """Write a 3D ``image`` as one single-frame instance per k slice; returns the SeriesInstanceUID.

    ``slice_positions`` (mm along the slice normal, one per slice) and ``skip_slices`` exist to make broken
    series for tests: uneven spacing and missing slices.
    """
    out.mkdir(parents=True, exist_ok=True)
    series_uid = uid(study_uid, series_description, str(series_number))
    array = sitk.GetArrayFromImage(image)  # [k, j, i]: one row-major (rows = j, columns = i) frame per slice
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = image.GetSpacing()
    origin = np.array(image.GetOrigin(), dtype=float)
    values = np.round(array).astype(np.int16)
    for k in range(array.shape[0]):
        if k in skip_slices:
            continue
        offset = spacing[2] * k if slice_positions is None else slice_positions[k]
        position = origin + direction[:, 2] * offset
        ds = _instance(modality, series_uid, study_uid, uid(series_uid, str(k)), patient_id)
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (j), column spacing (i)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.FrameOfReferenceUID = uid(study_uid, "frame-of-reference")
        ds.Rows, ds.Columns = values.shape[1], values.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(values[k]).tobytes()
        ds.save_as(out / f"{k + 1:04d}.dcm", write_like_original=False)
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
