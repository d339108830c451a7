"""Starts a real Orthanc (Debian package, DICOMweb plugin) with the project's own script, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

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
