"""Labelled images from a PACS for the command-line tools: every image series with a DICOM SEG, the newest
SEG of each, downloaded and converted once into a local datastore folder (``<id>.nii.gz`` and
``labels/final/<id>.nii.gz``, the id being the series UID) that ``evaluate`` and ``finetune`` read like any
other. A series already converted is not downloaded again; a corrected label (a newer SEG) is."""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import pydicom
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient
from pydicom import Dataset
from tqdm import tqdm

from ..atomic_files import write_json_atomic
from ..errors import MedicoSamError
from .seg import seg_to_label
from .series import read_series_folder
from .wado import download_series

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(value: str) -> bool:
    """A DICOM UID (digits and dots, at most 64): the only PACS value that becomes a file name here."""
    return isinstance(value, str) and len(value) <= 64 and bool(_UID.match(value))


def newest_segs(client: DICOMwebClient) -> Dict[str, Tuple[str, str]]:
    """Image series UID → (study UID, SEG series UID) of the newest SEG that references it."""
    newest: Dict[str, Tuple[Tuple[str, str], str, str]] = {}
    for item in client.search_for_series(search_filters={"Modality": "SEG"}):
        found = Dataset.from_json(item)
        study, seg_uid = str(found.StudyInstanceUID), str(found.SeriesInstanceUID)
        meta = Dataset.from_json(client.retrieve_series_metadata(study, seg_uid)[0])
        references = meta.get("ReferencedSeriesSequence")
        image = str(references[0].SeriesInstanceUID) if references else ""
        if not (is_uid(image) and is_uid(seg_uid) and is_uid(study)):
            logger.warning("SEG %s ignored: it names no valid image series", seg_uid)
            continue
        stamp = (str(meta.get("ContentDate", "")), str(meta.get("ContentTime", "")))
        if image not in newest or stamp > newest[image][0]:
            newest[image] = (stamp, study, seg_uid)
    return {image: (study, seg) for image, (_, study, seg) in newest.items()}


def fetch_labelled_series(url: str, folder: Path, progress: bool = True) -> Tuple[Path, List[Tuple[str, str]]]:
    """Bring every labelled series of the PACS at ``url`` into ``folder``; returns the folder and the
    ``(series, reason)`` of series that could not be brought."""
    client = DICOMwebClient(url.rstrip("/"))
    folder = Path(folder)
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    index_file = folder / "sources.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    failed: List[Tuple[str, str]] = []
    for image, (study, seg_uid) in tqdm(sorted(newest_segs(client).items()), desc="Labelled series from the PACS",
                                        unit="series", disable=not progress):
        image_file, label_file = folder / f"{image}.nii.gz", labels / f"{image}.nii.gz"
        if index.get(image) == seg_uid and image_file.is_file() and label_file.is_file():
            continue
        try:
            _convert(client, study, image, seg_uid, image_file, label_file)
        except (MedicoSamError, OSError, ValueError, RuntimeError) as error:
            failed.append((image, str(error)))
            logger.warning("Series %s not used: %s", image, error)
            continue
        index[image] = seg_uid
        write_json_atomic(index_file, index)
    return folder, failed


def _convert(client: DICOMwebClient, study: str, image: str, seg_uid: str, image_file: Path, label_file: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=".download_", dir=image_file.parent) as scratch:
        series_dir, seg_dir = Path(scratch) / "series", Path(scratch) / "seg"
        if not download_series(client, study, image, series_dir):
            raise MedicoSamError(f"the PACS sent no instances of series {image}")
        if not download_series(client, study, seg_uid, seg_dir):
            raise MedicoSamError(f"the PACS sent no instances of SEG {seg_uid}")
        series = read_series_folder(series_dir)
        picture = series.to_sitk()
        label = seg_to_label(pydicom.dcmread(str(next(seg_dir.glob("*.dcm")))), series)
        labelled = sitk.GetImageFromArray(label.transpose(2, 1, 0).astype("uint16"))
        labelled.CopyInformation(picture)
        for written, target in ((picture, image_file), (labelled, label_file)):
            partial = Path(scratch) / target.name
            sitk.WriteImage(written, str(partial), useCompression=True)
            shutil.move(str(partial), str(target))


def is_dicomweb_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def local_studies(source: str, dicom_cache_dir: Path, progress: bool = True) -> Path:
    """``source`` as a local datastore folder: a folder as it is, a DICOMweb URL fetched into
    ``<dicom_cache_dir>/labelled/<hash of the URL>``."""
    if not is_dicomweb_url(source):
        return Path(source)
    import xxhash

    folder = Path(dicom_cache_dir) / "labelled" / xxhash.xxh64_hexdigest(source.rstrip("/").encode())
    folder, failed = fetch_labelled_series(source, folder, progress)
    for image, reason in failed:
        logger.warning("Series %s from %s not used: %s", image, source, reason)
    return folder
