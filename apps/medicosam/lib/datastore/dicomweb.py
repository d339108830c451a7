"""A PACS (DICOMweb: Orthanc, dcm4chee, Google Healthcare) as the datastore, with DICOM SEG write-back.

MONAI Label's ``DICOMWebDatastore`` is kept for what works (QIDO listing of labelled series, its local cache
folder); this subclass replaces the parts that break or trust too much:

- image ids must be DICOM UIDs (they become folder names in the cache: no path can come from a request);
- a series is downloaded in the transfer syntax the PACS stores it in (WADO-RS ``transfer-syntax=*``, so a
  JPEG 2000 series is not refused by a PACS that cannot decompress it) into a hidden folder, renamed when
  complete, then checked and decoded here (:mod:`medicosam_app.dicom.series`): a SEG/SR, a series with a
  missing slice or uneven spacing, an enhanced multi-frame image or pixels that cannot be decoded get a 422
  that says so instead of a stack trace;
- final labels become DICOM SEG with highdicom (no dcmqi download at start-up), naming algorithm and model
  version, stored to the PACS by STOW-RS after the label is safe in the local cache;
- every image series is listed (radiographs, ultrasound clips, photographs, enhanced CT/MR...; SEG, SR,
  RTSTRUCT, PR, KO and other non-image series never), or the modalities ``--conf modalities`` names, unless
  ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` says otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pydicom
import requests
import SimpleITK as sitk
from cachetools import TTLCache
from dicomweb_client import DICOMwebClient
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from medicosam_app.dicom.image import read_dicom_folder
from medicosam_app.dicom.seg import (
    SegmentationAuthor,
    SegSource,
    label_names,
    label_to_seg,
    seg_to_label,
    seg_unsupported,
)
from medicosam_app.dicom.series import NON_IMAGE_MODALITIES, DicomSeries, DicomSeriesError, read_series_folder
from medicosam_app.dicom.wado import PacsContentError, download_series
from medicosam_app.errors import InvalidRequestError, PacsError
from medicosam_app.keyed_locks import KeyedLocks
from medicosam_app.geometry.volume import Volume, read_label, write_image

from .index import write_index
from .label_store import store_label
from .pacs_calls import pacs_failure
from .pacs_values import binary_label, check_uid, label_file, seg_not_stored

logger = logging.getLogger(__name__)

PENDING_SEG = "pacs_pending"  # label info: the SEG's author while the PACS has not taken it; None once stored


class MedicoSAMDicomWebDatastore(DICOMWebDatastore):
    def __init__(
        self,
        client: DICOMwebClient,
        filters: List[Dict[str, Any]],
        author: Callable[[], SegmentationAuthor],
        cache_path: Optional[str] = None,
        label_listing_s: float = 60.0,
    ) -> None:
        super().__init__(client=client, search_filter=filters[0], cache_path=cache_path, fetch_by_frame=False)
        self._filters = filters
        self._author = author
        self._listing: TTLCache = TTLCache(maxsize=1, ttl=settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY)
        # Labels change all day, and other replicas (or other tools) store SEGs in the same PACS: their listing
        # is kept for ``label_listing_s`` only, so every replica reads a colleague's correction within it.
        self._label_listing: TTLCache = TTLCache(maxsize=1, ttl=max(label_listing_s, 1e-3))
        self._series_locks = KeyedLocks()  # one download at a time per series; no table that only grows
        self._label_locks = KeyedLocks()  # one SEG upload at a time per series (a save, or a pending one sent)

    def _update_datastore_file(self, lock: bool = True) -> None:
        """The label-info index of this PACS cache, replaced in one step (MONAI Label truncates the file and then
        writes it: a crash between the two left an empty index)."""
        from filelock import FileLock

        def write() -> None:
            self._ignore_event_config = True
            write_index(self, self._datastore)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()

    def reachable(self, timeout_s: float = 3.0) -> Optional[str]:
        """None when the PACS answers a one-study search within ``timeout_s``, else a short reason (for
        ``/readyz``: no URL, no detail an anonymous caller should see)."""
        from dicomweb_client.web import _Transaction

        url = self._client._get_studies_url(_Transaction.SEARCH)  # the URL the client's own searches use
        try:
            answer = self._client._session.get(
                url, params={"limit": "1"}, headers={"Accept": "application/dicom+json"}, timeout=timeout_s
            )
        except requests.Timeout:
            return f"PACS did not answer within {timeout_s:.0f} s"
        except requests.RequestException:
            return "PACS unreachable"
        return None if answer.status_code < 400 else f"PACS answered {answer.status_code}"

    # -- listing ----------------------------------------------------------------------------------------

    def list_images(self) -> List[str]:
        if "series" not in self._listing:
            found: Dict[str, None] = {}
            for search in self._filters:
                for item in self._client.search_for_series(search_filters=search, fields=["Modality"]):
                    series = Dataset.from_json(item)
                    if str(series.get("Modality", "")).upper() in NON_IMAGE_MODALITIES:
                        continue  # a SEG, a report, a presentation state: never an image to open
                    found[str(series["SeriesInstanceUID"].value)] = None
            self._listing["series"] = list(found)
        return list(self._listing["series"])

    # -- images -----------------------------------------------------------------------------------------

    def _series_meta(self, series_uid: str) -> Dataset:
        try:
            found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
        except requests.RequestException as error:
            raise pacs_failure(f"The PACS at {self._client.base_url} did not answer", error) from error
        matches = [Dataset.from_json(item) for item in found]
        matches = [m for m in matches if str(m.get("SeriesInstanceUID", "")) == series_uid]
        if not matches:
            raise InvalidRequestError(f"Series {series_uid} is not in the PACS at {self._client.base_url}.", status=404)
        return matches[0]

    def series_folder(self, series_uid: str) -> Path:
        """The complete download of ``series_uid`` in the local cache (downloaded on first use)."""
        return self._download(check_uid(series_uid), Path(self._datastore.image_path()) / series_uid)

    def _download(self, series_uid: str, folder: Path) -> Path:
        """WADO-RS the series, in its stored transfer syntax, into a hidden folder beside ``folder``; renamed
        into place once complete, so a failed download leaves nothing that looks like a series."""
        if folder.is_dir() and any(folder.iterdir()):
            return folder
        meta = self._series_meta(series_uid)
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".download_{series_uid}_", dir=folder.parent))
        try:
            count = download_series(self._client, str(meta["StudyInstanceUID"].value), series_uid, partial)
            if not count:
                raise PacsError(f"The PACS at {self._client.base_url} sent no instances of series {series_uid}.")
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
        except requests.RequestException as error:
            raise pacs_failure(f"Downloading series {series_uid} from the PACS failed", error) from error
        except PacsContentError as error:
            raise PacsError(f"Downloading from the PACS at {self._client.base_url} failed: {error}") from error
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return folder

    def series(self, series_uid: str) -> DicomSeries:
        return read_series_folder(self.series_folder(series_uid))

    def seg_source(self, series_uid: str) -> SegSource:
        """What a SEG of this series is made over: the classic series (headers only), else the image as read
        (a radiograph, a stack, a clip, an enhanced instance)."""
        folder = self.series_folder(series_uid)
        try:
            return read_series_folder(folder)
        except DicomSeriesError:
            return read_dicom_folder(folder)

    def get_image_uri(self, image_id: str) -> str:
        """The series converted to one local image file (once): a classic CT/MR/PET volume as NIfTI, as before;
        a radiograph, a clip, a colour or an enhanced image as NRRD that keeps its layout, frame time and colour
        (:mod:`medicosam_app.dicom.image`)."""
        check_uid(image_id)
        with self._series_locks.hold(image_id):
            obj = self._datastore.objects.get(image_id)
            if obj and os.path.isfile(LocalDatastore.get_image_uri(self, image_id)):
                return LocalDatastore.get_image_uri(self, image_id)
            folder = self.series_folder(image_id)
            image = read_dicom_folder(folder)
            classic = image.series is not None and image.array.ndim == 3
            suffix = ".nii.gz" if classic else ".nrrd"
            fd, converted = tempfile.mkstemp(suffix=suffix, prefix=".converting_", dir=self._datastore.image_path())
            os.close(fd)
            try:
                if classic:
                    sitk.WriteImage(image.to_sitk(), converted, useCompression=True)
                else:
                    write_image(Volume(image.array, image.spacing, image.origin, image.direction,
                                       layout=image.layout, frame_time_ms=image.frame_time_ms), converted)
                info = {**self._dicom_info(image_id), "layout": image.layout, "spacing_source": image.spacing_source,
                        "presentation": list(image.steps)}
                if image.frame_time_ms is not None:
                    info["frame_time_ms"] = image.frame_time_ms
                LocalDatastore.add_image(self, image_id, converted, info)
            finally:
                if os.path.exists(converted):
                    os.remove(converted)
            logger.info("Series %s (%s, %s) cached as %s", image_id, image.modality, image.layout,
                        list(image.array.shape))
            return LocalDatastore.get_image_uri(self, image_id)

    # -- labels -----------------------------------------------------------------------------------------

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        """Listed image series with a SEG in the PACS, each once however many times it was corrected."""
        return list(self.newest_segs())

    def newest_segs(self) -> Dict[str, str]:
        """Image series → its newest DICOM SEG in the PACS (a corrected label is saved as a new SEG)."""
        if "segs" not in self._label_listing:
            self._label_listing["segs"] = self._find_newest_segs()
        return dict(self._label_listing["segs"])

    def _find_newest_segs(self) -> Dict[str, str]:
        newest: Dict[str, tuple] = {}
        listed = set(self.list_images())
        for item in self._client.search_for_series(search_filters={"Modality": "SEG"}):
            found = Dataset.from_json(item)
            meta = Dataset.from_json(self._client.retrieve_series_metadata(
                str(found.StudyInstanceUID), str(found.SeriesInstanceUID))[0])
            references = meta.get("ReferencedSeriesSequence")
            if not references or str(references[0].SeriesInstanceUID) not in listed:
                logger.warning("SEG %s ignored: it references no listed image series", found.SeriesInstanceUID)
                continue
            image = str(references[0].SeriesInstanceUID)
            stamp = (str(meta.get("ContentDate", "")), str(meta.get("ContentTime", "")))
            if image not in newest or stamp > newest[image][0]:
                newest[image] = (stamp, str(found.SeriesInstanceUID))
        return {image: seg for image, (_, seg) in newest.items()}

    def _download_labeled_data(self) -> None:
        """Bring each labelled series and its newest SEG into the local cache (``datalist`` calls this).

        Unlike MONAI Label's version, a local label whose SEG is gone from the PACS is kept, not deleted:
        it may be a label whose upload failed."""
        for image, seg in self.newest_segs().items():
            self.get_image_uri(image)
            self.get_label_uri(seg, DefaultLabelTag.FINAL, image_id=image)

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        if label_tag == DefaultLabelTag.FINAL and not image_id:
            # GET /datastore/label names the image series: its newest SEG in the PACS wins over this cache's copy
            # (another replica may have saved a correction); with the PACS away, this cache's copy is served.
            try:
                newest = self.newest_segs().get(label_id)
            except (PacsError, requests.RequestException) as error:
                logger.warning("Serving the cached label of %s: the PACS did not list labels (%s)", label_id, error)
                newest = None
            if newest:
                return self.get_label_uri(newest, label_tag, image_id=label_id)
        if label_tag != DefaultLabelTag.FINAL or not image_id:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        local = LocalDatastore.get_label_uri(self, image_id, label_tag)
        local_seg = LocalDatastore.get_label_info(self, image_id, label_tag).get("SeriesInstanceUID")
        # The local copy wins unless it came from another (older) SEG: then this SEG is the correction.
        if local and os.path.isfile(local) and local_seg in (None, label_id):
            return local
        seg_folder = self._download(check_uid(label_id, "label"), Path(self._datastore.label_path(label_tag)) / label_id)
        seg = pydicom.dcmread(str(next(seg_folder.glob("*.dcm"))))
        image_path = self.get_image_uri(image_id)
        label = seg_to_label(seg, self.seg_source(image_id))
        reference = sitk.ReadImage(image_path)
        written = label_file(label, reference, self._datastore.label_path(label_tag))
        try:
            store_label(self, image_id, written, label_tag, {"SeriesInstanceUID": label_id, "source": "PACS"})
        finally:
            os.remove(written)
        return LocalDatastore.get_label_uri(self, image_id, label_tag)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any], label_id: str = ""
    ) -> str:
        image_uri = self.get_image_uri(image_id)
        converted = ""
        if "".join(Path(label_filename).suffixes) == ".bin":  # OHIF sends raw voxels in the image's order
            converted = label_filename = binary_label(image_uri, label_filename)
        try:
            info = dict(label_info or {})
            # The label is safe in the local cache first: a PACS that refuses the SEG loses nothing.
            store_label(self, image_id, label_filename, label_tag, info)
            if label_tag != DefaultLabelTag.FINAL:
                return image_id
            author = self._author()
            with self._label_locks.hold(image_id):
                try:
                    self.store_seg(image_id, label_filename, info, author)
                except requests.RequestException as error:
                    # Kept here and marked: lib/datastore/pending_segs.py sends it when the PACS answers again.
                    LocalDatastore.update_label_info(self, image_id, label_tag, {**info, PENDING_SEG: asdict(author)})
                    raise seg_not_stored(error) from error
            return image_id
        finally:
            if converted and os.path.exists(converted):
                os.remove(converted)


    def store_seg(self, image_id: str, label_filename: str, info: Dict[str, Any], author: SegmentationAuthor) -> None:
        """Send the final label of ``image_id`` to the PACS as a DICOM SEG made by ``author`` and record it in the
        label's info (a series the PACS cannot be given a SEG of: the reason is recorded instead). Raises
        ``requests.RequestException`` when the PACS does not take it. Call with ``_label_locks`` held."""
        tag = DefaultLabelTag.FINAL
        source = self.seg_source(image_id)
        unsupported = seg_unsupported(source.datasets(), len(source.frames))
        if unsupported:
            # The label is saved; the PACS just cannot be given it as a SEG yet. Say so in its info.
            LocalDatastore.update_label_info(self, image_id, tag, {**info, "pacs": unsupported, PENDING_SEG: None})
            logger.warning("Series %s: %s", image_id, unsupported)
            return
        label = read_label(label_filename).array
        seg = label_to_seg(label, source, label_names(info.get("label_info")), author)
        self._client.store_instances([seg])
        info = {**info, "SeriesInstanceUID": str(seg.SeriesInstanceUID), "algorithm": author.algorithm,
                "model_version": author.model_version, PENDING_SEG: None}
        image_info = self.get_image_info(image_id)
        for key in ("Modality", "PatientID", "StudyInstanceUID"):
            info[key] = image_info.get(key)
        LocalDatastore.update_label_info(self, image_id, tag, info)
        self._label_listing.clear()
        logger.info("DICOM SEG %s stored for series %s", seg.SeriesInstanceUID, image_id)
