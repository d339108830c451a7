"""The one image a session holds, whatever form it was uploaded in.

``PUT /session/`` stores a single uploaded file as the session's image. An archive (``uncompress=true``)
or several files are stored by MONAI Label 0.8.5 as a *folder*, which it then names as the image: the
session's image download (``GET /session/<id>?image=true``) failed with a 500 on it and inference could not
read it. Here the folder is resolved once, right after the upload (and for a session made before, when it is
next used): a folder with one NIfTI / NRRD / MHA file makes that file the image; one with the files of a
single DICOM series is checked (:mod:`medicosam_app.dicom.series`) and converted to NIfTI, which becomes the
image. Anything else is refused with a message that says what a session must hold.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import pydicom
import SimpleITK as sitk

from medicosam_app.dicom.series import read_series_folder
from medicosam_app.errors import InvalidRequestError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
WHAT_A_SESSION_HOLDS = (
    "a session holds one image: one NIfTI (.nii, .nii.gz), NRRD (.nrrd) or MHA (.mha) file, or the files of "
    "one DICOM series (as several files, or in one archive with uncompress=true)"
)
CONVERTED_NAME = "series.nii.gz"  # the NIfTI made from a session's DICOM series, in the session's folder
_IGNORED_FOLDERS = {"__MACOSX"}  # what macOS adds to archives (resource forks)
_RESOLVING = threading.Lock()  # two requests for one older session must not convert it twice at once


def ignored(relative: Path) -> bool:
    """Hidden files and folders, and the resource forks macOS archives add: never the image."""
    return any(part.startswith(".") or part in _IGNORED_FOLDERS for part in relative.parts)


def is_image_file(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def is_dicom_file(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":  # an index of the media, not an image
        return False
    try:
        pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - whatever pydicom cannot read is no DICOM file to us
        return False
    return True


def _listed(paths: Sequence[Path], root: Path, limit: int = 5) -> str:
    names = [str(PurePosixPath(p.relative_to(root))) for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(repr(n) for n in names) + more


def single_file_image(path: Path) -> None:
    """A session uploaded as one file: an image file or a DICOM instance; else a 422."""
    if not (is_image_file(path) or is_dicom_file(path)):
        raise InvalidRequestError(
            f"The session file {path.name!r} is neither a NIfTI, NRRD or MHA file nor DICOM: {WHAT_A_SESSION_HOLDS}."
        )


def folder_image(folder: Path) -> Path:
    """The image file a session folder holds: its one image file, or its DICOM series converted to NIfTI
    beside the folder. Raises :class:`InvalidRequestError` (422) saying what was found instead."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not ignored(p.relative_to(folder)))
    images = [p for p in files if is_image_file(p)]
    dicom = [p for p in files if not is_image_file(p) and is_dicom_file(p)]
    if len(images) == 1 and not dicom:
        return images[0]
    if images:
        found = f"{len(images)} image files ({_listed(images, folder)})"
        if dicom:
            found += f" and {len(dicom)} DICOM files"
        raise InvalidRequestError(f"The upload holds {found}, but {WHAT_A_SESSION_HOLDS}. Upload one at a time.")
    if not dicom:
        what = f"only {_listed(files, folder)}" if files else "no files"
        raise InvalidRequestError(f"The upload holds {what}, no image: {WHAT_A_SESSION_HOLDS}.")
    folders = sorted({p.parent for p in dicom})
    if len(folders) > 1:
        raise InvalidRequestError(
            f"The upload holds DICOM files in {len(folders)} folders ({_listed(folders, folder)}), but "
            f"{WHAT_A_SESSION_HOLDS}: send one series, its files in one folder."
        )
    return convert_series(folders[0], folder.parent / CONVERTED_NAME)


def convert_series(series_folder: Path, destination: Path) -> Path:
    """The checked DICOM series in ``series_folder`` written as NIfTI to ``destination`` (atomically)."""
    image = read_series_folder(series_folder).to_sitk()  # DicomSeriesError (422) says what is wrong with it
    fd, partial = tempfile.mkstemp(suffix=".nii.gz", prefix=".converting_", dir=destination.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, partial, useCompression=True)
        os.replace(partial, destination)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    logger.info("Session series in %s converted to %s %s", series_folder.name, destination.name, image.GetSize())
    return destination


def resolve_session_image(sessions: Any, session_id: str) -> None:
    """Make the session's recorded image one image file (see the module's docstring). A folder that holds
    no single image, or a single file that is no image, raises a 422."""
    with _RESOLVING:
        _resolve(sessions, session_id)


def _resolve(sessions: Any, session_id: str) -> None:
    info = sessions.get_session(session_id, update_ts=False)
    if info is None:
        return
    image = Path(info.image)
    if image.is_file():
        single_file_image(image)
        return
    if not image.is_dir():
        return  # gone: MONAI Label drops the session as dangling
    resolved = folder_image(image)
    if resolved.parent == image.parent:  # converted beside the folder: the DICOM copies are not needed any more
        shutil.rmtree(image, ignore_errors=True)
    info.image = str(resolved)
    sessions._write_meta_info(session_id, info)  # MONAI Label's own writer of meta.info
    sessions[session_id] = info
    logger.info("Session %s: image %s", session_id, resolved.relative_to(Path(info.path)))

