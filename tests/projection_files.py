"""DICOM files of the 2D kinds, made by the tests: radiographs (CR/DX), secondary captures, ultrasound clips.

Every picture is asymmetric (values differ along rows, columns and both diagonals), so a transpose or a flip of
rows, columns or frames cannot pass a comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "ES": "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image Storage
}
STUDY = "1.2.826.0.1.3680043.8.498.77000"


def asymmetric_picture(rows: int = 30, columns: int = 45, frames: int = 0, colour: bool = False,
                       seed: int = 0) -> np.ndarray:
    """(rows, columns), (frames, rows, columns) or with a trailing RGB axis: uint16 grey up to 4095, uint8 colour.
    A bright off-centre disc moves one pixel right per frame (something to follow through a clip)."""
    count = max(frames, 1)
    f, r, c = np.meshgrid(np.arange(count), np.arange(rows), np.arange(columns), indexing="ij")
    grey = r * 37 + c * 11 + (r * c) % 7 + f * 3
    disc = (r - 0.35 * rows) ** 2 + (c - 0.6 * columns - f) ** 2 < (0.2 * rows) ** 2
    grey = grey + 900 * disc
    rng = np.random.default_rng(seed)
    if colour:
        picture = np.stack([grey % 251, (grey // 3 + 40) % 253, (255 - grey % 241) * (1 - disc) + 30 * disc], -1)
        picture = (picture + rng.integers(0, 3, picture.shape)).clip(0, 255).astype(np.uint8)
    else:
        picture = (grey + rng.integers(0, 3, grey.shape)).clip(0, 4095).astype(np.uint16)
    return picture if frames else picture[0]


def write_dicom(path: Path, pixels: np.ndarray, modality: str = "CR", photometric: Optional[str] = None,
                series_uid: Optional[str] = None, planar: int = 0, instance: int = 1, **attributes) -> Path:
    """One instance holding ``pixels``: (rows, columns) grey, (rows, columns, 3) RGB, or frames first for a
    multi-frame instance (``NumberOfFrames`` is set when ``pixels`` has a frame axis: pass frames=True)."""
    frames = attributes.pop("frames", False)
    colour = pixels.shape[-1] == 3 and pixels.dtype == np.uint8 and pixels.ndim == (4 if frames else 3)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASSES.get(modality, SOP_CLASSES["OT"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series_uid or generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "PROJ-1", "Projection^Test", modality
    ds.SeriesNumber, ds.InstanceNumber = 1, instance
    ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "19700101", "O", "20261207", "101500"
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Rows, ds.Columns = pixels.shape[(1 if frames else 0)], pixels.shape[(2 if frames else 1)]
    if frames:
        ds.NumberOfFrames = pixels.shape[0]
    if colour:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric or "RGB", planar
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        data = np.moveaxis(pixels, -1, -3) if planar else pixels  # planar: each frame's R plane, G plane, B plane
        ds.PixelData = np.ascontiguousarray(data).astype(np.uint8).tobytes()
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric or "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(pixels).astype("<u2").tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), write_like_original=False)
    return path
