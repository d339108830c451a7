"""Starts the real MONAI Label server with our app on 127.0.0.1 and gives tests the Slicer module's client."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import requests

from medicosam_app.runtime.heap import glibc_tunables

REPO = Path(__file__).resolve().parents[2]
SLICER_MODULE = Path(sys.prefix) / "monailabel" / "plugins" / "slicer" / "MONAILabel"


def slicer_client(url: str, tmpdir: Path, client_id: str = "slicer-test"):
    """The client library the 3D Slicer MONAI Label module uses, as the monailabel wheel installs it."""
    if str(SLICER_MODULE) not in sys.path:
        sys.path.insert(0, str(SLICER_MODULE))
    from MONAILabelLib.client import MONAILabelClient  # noqa: WPS433 (import from the installed plugin)

    tmpdir.mkdir(parents=True, exist_ok=True)
    return MONAILabelClient(url, tmpdir=str(tmpdir), client_id=client_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    studies: Path,
    log_file: Path,
    env: Optional[Dict[str, str]] = None,
    conf: Optional[Dict[str, str]] = None,
    app: Path = REPO / "apps" / "medicosam",
    ready_path: str = "/info/",
    host: str = "127.0.0.1",
    malloc_tunables: bool = True,
    tls: Optional[Tuple[Path, Path]] = None,
) -> Iterator[str]:
    """``monailabel start_server --app apps/medicosam`` as a subprocess; yields its URL once /info answers.
    ``tls``: (certificate, key) files: the server speaks HTTPS (uvicorn's TLS), checked against that certificate."""
    port = free_port()
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app),
               "--studies", str(studies), "--host", host, "--port", str(port)]
    if tls is not None:
        command += ["--ssl_certfile", str(tls[0]), "--ssl_keyfile", str(tls[1])]
    for key, value in (conf or {}).items():
        command += ["--conf", key, value]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MEDICOSAM_")}
    environment.update({"MEDICOSAM_DOWNLOAD": "false", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"})
    # Each server gets its own cache folder: the disk embedding cache must not leak between tests.
    environment["MEDICOSAM_CACHE_DIR"] = str(log_file.parent / "cache")
    # precision auto picks by timing this machine: tests that compare a server's answer with an in-process
    # fp32 run need the same precision everywhere (test_precision_server.py runs auto).
    environment["MEDICOSAM_PRECISION"] = "fp32"
    environment.update(env or {})
    # As scripts/start_server.sh starts it: every thread on one malloc arena (medicosam_app/runtime/heap.py).
    if not malloc_tunables:  # as a plain `monailabel start_server` would run
        environment.pop("GLIBC_TUNABLES", None)
    tunables = glibc_tunables(command, environment) if malloc_tunables else ""
    if tunables:
        environment["GLIBC_TUNABLES"] = tunables
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify = str(tls[0]) if tls else True
    with running_process("server", command, log_file, f"{url}{ready_path}", timeout=180, env=environment,
                         verify=verify):
        yield url


@contextlib.contextmanager
def running_process(
    name: str, command: List[str], log_file: Path, ready_url: str, timeout: float, env: Optional[Dict[str, str]] = None,
    verify: "bool | str" = True,
) -> Iterator[subprocess.Popen]:
    """Start ``command`` (output to ``log_file``), wait until ``ready_url`` answers 2xx, stop it afterwards.

    A process that exits or never answers fails with the tail of its log, so a test says why."""
    with open(log_file, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_file.read_text()[-3000:]}")
                try:
                    if requests.get(ready_url, timeout=2, verify=verify).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer in {timeout:.0f} s:\n{log_file.read_text()[-3000:]}")
                time.sleep(0.3)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_model(url: str, model: str = "medicosam_interactive", timeout: float = 60) -> dict:
    """The model's status once it has finished loading (it loads in the background after start-up)."""
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{url}/info/", timeout=5).json()["models"][model]["model_status"]
        if status["state"] != "loading" or time.monotonic() > deadline:
            return status
        time.sleep(0.2)
