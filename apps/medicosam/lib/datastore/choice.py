"""Which datastore a server gets from its ``--studies``: a folder, or a PACS's DICOMweb root; and the author a
DICOM SEG names."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional

import requests
from dicomweb_client.session_utils import create_session_from_user_pass
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX

from medicosam_app import __version__
from medicosam_app.dicom.seg import SegmentationAuthor
from medicosam_app.geometry.volume import IMAGE_FILE_PATTERNS
from medicosam_app.settings import Settings

from .dicomweb import MedicoSAMDicomWebDatastore
from .local import CheckedLocalDatastore
from .pacs_calls import bound_pacs_calls
from .pacs_values import search_filters

logger = logging.getLogger(__name__)


def folder_datastore(folder: str) -> CheckedLocalDatastore:
    """A folder of images with ``labels/<tag>/`` beside them; MONAI Label's extensions plus every picture and
    volume format the core reads (JPEG, TIFF, MHA, DICOM)."""
    return CheckedLocalDatastore(
        folder,
        extensions=list(dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, *IMAGE_FILE_PATTERNS])),
        auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
        read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
    )


def pacs_datastore(url: str, ours: Settings, author: Callable[[], SegmentationAuthor]) -> MedicoSAMDicomWebDatastore:
    """A PACS over DICOMweb at ``url``, with DICOM SEG written by highdicom (MONAI Label would download dcmqi)."""
    logger.info("Using DICOMweb: %s (modalities %s)", url, ",".join(ours.dicom_modalities))
    session = requests.Session()
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD)
    bound_pacs_calls(session)
    client = DICOMwebClientX(
        url=url,
        session=session,
        qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
        stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )
    # dicomweb-client retries a refused connection for ~30 s by default: a PACS that is away would hold every
    # click that long. Two quick attempts, then the 503 that says to retry (pacs_calls.py).
    client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=200)
    cache = settings.MONAI_LABEL_DICOMWEB_CACHE_PATH.strip() or str(ours.dicom_cache_dir)
    return MedicoSAMDicomWebDatastore(client, search_filters(ours.dicom_modalities), author, cache_path=cache,
                                      label_listing_s=ours.pacs_label_listing_s)


def segmentation_author(
    model_status: Dict[str, Any], semantic_version: Optional[str], interactive_version: Optional[str],
    user: Optional[str],
) -> SegmentationAuthor:
    """The MedicoSAM checkpoint (name and hash) and the serving decoders, as a SEG's AlgorithmVersion, and the
    user who saved the label as its ContentCreatorName."""
    hash16 = str(model_status.get("xxh128", ""))[:16]
    available = model_status.get("available")
    parts = [f"{model_status['checkpoint']} xxh128:{hash16}" if available else "MedicoSAM checkpoint not loaded"]
    if semantic_version:
        parts.append(f"semantic decoder {semantic_version}")
    if interactive_version:
        parts.append(f"interactive decoder {interactive_version}")
    version = "; ".join(parts)
    if len(version) > 64 and available:
        # AlgorithmVersion is a DICOM LO (64 characters; a PACS may refuse more): the hash names the checkpoint.
        version = "; ".join([f"xxh128:{hash16}"] + [p.replace(" decoder", "") for p in parts[1:]])
    return SegmentationAuthor(algorithm="MedicoSAM", model_version=version,
                              software_version=f"MedicoSAM Label {__version__}", creator=user)
