"""Starts a real Orthanc (Debian package, DICOMweb plugin) with the project's own script, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import requests

from .harness import REPO, free_port


@contextlib.contextmanager
def running_orthanc(storage: Path) -> Iterator[str]:
    """``scripts/start_orthanc.sh`` in the foreground on a free port; yields the DICOMweb root URL."""
    port = free_port()
    log_file = storage.parent / f"{storage.name}.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "start_orthanc.sh"), "--port", str(port), "--storage", str(storage)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/dicom-web"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with {process.returncode}:\n{log_file.read_text()[-3000:]}")
                try:
                    if requests.get(f"{url}/studies", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not answer in 60 s:\n{log_file.read_text()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def upload(url: str, *paths: Path) -> None:
    """Upload with the same command an admin runs (scripts/upload_dicom.py)."""
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "upload_dicom.py"), "--dicomweb", url,
         *map(str, paths)],
        check=True, capture_output=True,
    )
