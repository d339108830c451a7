"""What the PACS datastore reads from requests and settings, and the answers it gives: series UIDs, the QIDO filters
that list image series, OHIF's raw labelmaps, and the answer to a save whose SEG the PACS did not take."""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, Dict, List, Sequence

import numpy as np
import requests
import SimpleITK as sitk
from monailabel.config import settings

from medicosam_app.errors import InvalidRequestError, PacsError
from medicosam_app.geometry.volume import read_volume, write_label


UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(value: str, what: str = "image") -> str:
    """``value`` when it is a DICOM UID (an id from a request becomes a folder name: nothing else may pass)."""
    if not isinstance(value, str) or len(value) > 64 or not UID.match(value):
        raise InvalidRequestError(
            f"'{value}' is not a DICOM SeriesInstanceUID: with a PACS datastore, '{what}' is the series UID."
        )
    return value


MONAI_LABEL_DEFAULT_FILTER = {"Modality": "CT"}


def search_filters(modalities: Sequence[str]) -> List[Dict[str, Any]]:
    """The QIDO filters that list image series: every series (``--conf modalities all``, the default; series
    that are not images are left out of the listing), or one per modality (``--conf modalities CT,MR``), unless
    ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` was set to something other than MONAI Label's CT-only default
    (``monailabel start_server`` exports every setting to the environment, so its presence alone says nothing)."""
    configured = dict(settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER or {})
    if configured and configured != MONAI_LABEL_DEFAULT_FILTER:
        return [configured]
    if not modalities or "ALL" in modalities:
        return [{}]
    return [{"Modality": m} for m in modalities]


def seg_not_stored(error: requests.RequestException) -> PacsError:
    """The answer to a save whose SEG the PACS did not take: the label is kept, and will be sent again."""
    away = isinstance(error, (requests.ConnectionError, requests.Timeout))
    what = "is not answering" if away else f"refused the DICOM SEG ({error})"
    return PacsError(
        f"The label is saved on this server, not lost, but the PACS {what}. The server sends it to the PACS when "
        "the PACS answers again; saving again also retries.",
        away=away, retry_after_s=30,
    )


def binary_label(image_uri: str, raw: str) -> str:
    """Raw uint8 voxels, i fastest (what OHIF's labelmap holds), as a label file on the image's grid. The grid is
    the image's voxel grid without its colour channels (MONAI Label's converter counted them as voxels)."""
    image = read_volume(image_uri)
    values = np.fromfile(raw, dtype=np.uint8)
    if values.size != int(np.prod(image.shape)):
        raise InvalidRequestError(
            f"The raw label holds {values.size} values but the image has {int(np.prod(image.shape))} voxels "
            f"({' x '.join(map(str, image.shape))}): send one uint8 value per voxel, i fastest.")
    return str(write_label(values.reshape(image.shape, order="F"), image, ".nii.gz",
                           directory=os.path.dirname(raw) or None))


def label_file(label: np.ndarray, reference: sitk.Image, folder: str) -> str:
    """``label`` [i, j, k] on ``reference``'s grid, written to a hidden temporary .nii.gz in ``folder``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(label.transpose(2, 1, 0)))
    image.CopyInformation(reference)
    fd, path = tempfile.mkstemp(suffix=".nii.gz", prefix=".from_seg_", dir=folder)
    os.close(fd)
    sitk.WriteImage(image, path, useCompression=True)
    return path
