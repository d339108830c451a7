"""WADO-RS download of a series exactly as the PACS stores it (``transfer-syntax=*``).

A WADO-RS request without a transfer syntax asks the PACS for Explicit VR Little Endian, which makes it
decompress every instance first. A PACS that cannot decompress what it stores (Orthanc's built-in codecs
have no JPEG 2000) then fails the whole download. Asking for ``transfer-syntax=*`` gets each instance in
the syntax it was stored in, untouched: no work on the PACS, no second lossy step, and GDCM decodes it here
(:mod:`medicosam_app.dicom.series`).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import requests
from dicomweb_client import DICOMwebClient

# PS3.18 §8.7.3.5.2: "*" lets the origin server send each instance in the transfer syntax it holds.
STORED_TRANSFER_SYNTAX = (("application/dicom", "*"),)


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
        except requests.RequestException:
            raise  # the PACS or the connection failed: not a content problem (and an OSError subclass)
        except (pydicom.errors.InvalidDicomError, ValueError, EOFError, OSError) as error:
            raise PacsContentError(
                f"instance {count + 1} of series {series_uid} sent by the PACS is not readable DICOM: {error}"
            ) from error
        count += 1
        # write_like_original keeps the transfer syntax, encapsulated frames and element encodings as sent.
        instance.save_as(folder / f"{count:05d}.dcm", write_like_original=True)
