"""Starts a real Orthanc (Debian package, DICOMweb plugin) with the project's own script, on 127.0.0.1, and
asks it, through its REST API, to store series in other transfer syntaxes as a PACS would."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import requests

from .harness import REPO, free_port, running_process


@contextlib.contextmanager
def running_orthanc(storage: Path) -> Iterator[str]:
    """``scripts/start_orthanc.sh`` in the foreground on a free port; yields the DICOMweb root URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/dicom-web"
    command = [str(REPO / "scripts" / "start_orthanc.sh"), "--port", str(port), "--storage", str(storage)]
    with running_process("Orthanc", command, storage.parent / f"{storage.name}.log", f"{url}/studies", timeout=60):
        yield url


def upload(url: str, *paths: Path) -> None:
    """Upload with the same command an admin runs (scripts/upload_dicom.py)."""
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "upload_dicom.py"), "--dicomweb", url,
         *map(str, paths)],
        check=True, capture_output=True,
    )


def rest_root(dicomweb_url: str) -> str:
    """Orthanc's own REST API beside its DICOMweb root."""
    return dicomweb_url.rsplit("/dicom-web", 1)[0]


def orthanc_series_id(dicomweb_url: str, series_uid: str) -> str:
    found = requests.post(f"{rest_root(dicomweb_url)}/tools/lookup", data=series_uid, timeout=30)
    found.raise_for_status()
    [series] = [item["ID"] for item in found.json() if item["Type"] == "Series"]
    return series


def transcode_series(dicomweb_url: str, series_uid: str, transfer_syntax: str, description: str) -> str:
    """Have Orthanc store a copy of a series in ``transfer_syntax`` (its DCMTK codecs: JPEG, JPEG-LS,
    deflate, big-endian; not JPEG 2000 or RLE), as a new series of the same study; returns its UID."""
    root = rest_root(dicomweb_url)
    answer = requests.post(
        f"{root}/series/{orthanc_series_id(dicomweb_url, series_uid)}/modify",
        json={"Transcode": transfer_syntax, "Replace": {"SeriesDescription": description}}, timeout=300,
    )
    answer.raise_for_status()
    return requests.get(f"{root}/series/{answer.json()['ID']}", timeout=30).json()["MainDicomTags"]["SeriesInstanceUID"]


def stored_files(dicomweb_url: str, series_uid: str, folder: Path) -> Path:
    """The instances of a series exactly as Orthanc stores them (its REST ``/file``, no DICOMweb), the
    reference a test reads with GDCM."""
    root = rest_root(dicomweb_url)
    folder.mkdir(parents=True, exist_ok=True)
    instances = requests.get(f"{root}/series/{orthanc_series_id(dicomweb_url, series_uid)}/instances", timeout=30)
    instances.raise_for_status()
    for number, instance in enumerate(instances.json(), start=1):
        content = requests.get(f"{root}/instances/{instance['ID']}/file", timeout=60)
        content.raise_for_status()
        (folder / f"{number:05d}.dcm").write_bytes(content.content)
    return folder
