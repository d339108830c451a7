"""A DICOM file in a folder datastore is served as the image the server reads, not as the file.

3D Slicer opens what ``GET /datastore/image`` sends with its own reader. For a radiograph stored as one DICOM
file, GDCM may read another spacing (ImagerPixelSpacing, the magnification) or polarity than the server's
reader does (:mod:`medicosam_app.dicom.image`), and a label would then overlay at another scale. So the file
is converted once to NRRD (colour, layout and frame time kept) in a hidden folder of the datastore, and that
copy is served and read; it is made again when the DICOM file changes (its size and modification time are
noted in the NRRD header).
"""

from __future__ import annotations

import logging
import os

import SimpleITK as sitk

from medicosam_app.geometry.volume import read_volume, write_image

logger = logging.getLogger(__name__)

CONVERTED_FOLDER = ".medicosam_converted"
SOURCE_KEY = "medicosam_source"


def served_image(path: str, datastore_path: str) -> str:
    """``path``, or for a ``.dcm`` file its converted NRRD (made now if missing or stale). A datastore that
    cannot be written (read-only) serves the file itself."""
    if not path or not path.lower().endswith(".dcm") or not os.path.isfile(path):
        return path
    stat = os.stat(path)
    stamp = f"{stat.st_size}-{stat.st_mtime_ns}"
    target = os.path.join(datastore_path, CONVERTED_FOLDER, os.path.basename(path)[: -len(".dcm")] + ".nrrd")
    if _stamp_of(target) == stamp:
        return target
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        write_image(read_volume(path), target, notes={SOURCE_KEY: stamp})
    except OSError as error:
        logger.warning("Serving %s unconverted: %s", os.path.basename(path), error)
        return path
    logger.info("DICOM file %s converted for serving: %s", os.path.basename(path), target)
    return target


def _stamp_of(converted: str) -> str:
    if not os.path.isfile(converted):
        return ""
    reader = sitk.ImageFileReader()
    reader.SetFileName(converted)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    return reader.GetMetaData(SOURCE_KEY) if reader.HasMetaDataKey(SOURCE_KEY) else ""
