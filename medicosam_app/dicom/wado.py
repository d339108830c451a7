"""WADO-RS download of a series exactly as the PACS stores it (``transfer-syntax=*``).

A WADO-RS request without a transfer syntax asks the PACS for Explicit VR Little Endian, which makes it
decompress every instance first. A PACS that cannot decompress what it stores (Orthanc's built-in codecs
have no JPEG 2000) then fails the whole download. Asking for ``transfer-syntax=*`` gets each instance in
the syntax it was stored in, untouched: no work on the PACS, no second lossy step, and GDCM decodes it here
(:mod:`medicosam_app.dicom.series`).

Some PACS refuse ``transfer-syntax=*`` (400, 406 or 415). Then the series is asked for again in the PACS's
default syntax, decompressed by the PACS, and a warning says so once per PACS.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import requests
from dicomweb_client import DICOMwebClient

logger = logging.getLogger(__name__)

# PS3.18 §8.7.3.5.2: "*" lets the origin server send each instance in the transfer syntax it holds.
STORED_TRANSFER_SYNTAX = (("application/dicom", "*"),)
REFUSED_MEDIA_TYPE = {400, 406, 415}
_warned: set = set()


class PacsContentError(Exception):
    """The PACS answered, but with something that is not a DICOM instance."""


def download_series(client: DICOMwebClient, study_uid: str, series_uid: str, folder: Path) -> int:
    """Write every instance of the series into ``folder`` (``00001.dcm``, ...) in its stored transfer syntax.

    Instances are streamed one at a time, so a large series is never held in memory whole. File names are
    counters, never UIDs: nothing the PACS sends becomes a path. Returns the number of instances written.
    Raises ``requests.RequestException`` when the PACS fails and :class:`PacsContentError` when a part is
    not DICOM.
    """
    folder.mkdir(parents=True, exist_ok=True)
    instances = client.iter_series(study_uid, series_uid, media_types=STORED_TRANSFER_SYNTAX)
    count = 0
    while True:
        try:
            instance = next(instances)
        except StopIteration:
            return count
        except requests.HTTPError as error:
            status = getattr(error.response, "status_code", None)
            if count or status not in REFUSED_MEDIA_TYPE:
                raise
            if client.base_url not in _warned:
                _warned.add(client.base_url)
                logger.warning("The PACS at %s refuses transfer-syntax=* (%s): series are asked for in its default "
                               "transfer syntax, which it decompresses", client.base_url, status)
            instances = client.iter_series(study_uid, series_uid)
            continue
        except requests.RequestException:
            raise  # the PACS or the connection failed: not a content problem (and an OSError subclass)
        except (pydicom.errors.InvalidDicomError, ValueError, EOFError, OSError) as error:
            raise PacsContentError(
                f"instance {count + 1} of series {series_uid} sent by the PACS is not readable DICOM: {error}"
            ) from error
        count += 1
        # write_like_original keeps the transfer syntax, encapsulated frames and element encodings as sent.
        instance.save_as(folder / f"{count:05d}.dcm", write_like_original=True)
