"""SIGTERM stops the server within seconds, even with a response stuck in flight and a training round running; the
next start recovers (the training lock is free, no half-made version is listed, a new round trains)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from conftest import SEMANTIC_TRAINING, write_mni_subjects, write_volume

from .harness import REPO, free_port, wait_for_model

pytestmark = pytest.mark.server
SEMANTIC = "medicosam_semantic"


def _start(studies: Path, root: Path, checkpoint: Path, log_name: str):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDICOSAM_")}
    env.update({
        "MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_DOWNLOAD": "false", "MEDICOSAM_PREFETCH_RADIUS": "0",
        "MEDICOSAM_CACHE_DIR": str(root / "cache"), "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
        "MEDICOSAM_RETRAIN_AFTER_LABELS": "0", "OMP_NUM_THREADS": "1",
        **{f"MEDICOSAM_TRAIN_{k.upper()}": str(v) for k, v in SEMANTIC_TRAINING.items()},
    })
    log = open(root / log_name, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(REPO / "apps" / "medicosam"),
         "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, (root / log_name).read_text()[-3000:]
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{url}/info/", timeout=2).ok:
                break
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.3)
    assert wait_for_model(url)["available"]
    return process, url, log


def _stalled_download(url: str, image_id: str) -> socket.socket:
    """A client (a frozen viewer, a dead network) that asked for an image and never reads the answer: the
    server's response stays in flight, and uvicorn's graceful shutdown waits for it without end."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /datastore/image?image={image_id} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def _training_running(url: str) -> bool:
    return requests.get(f"{url}/train/", params={"check_if_running": "true"}, timeout=10).status_code == 200


def test_sigterm_stops_within_seconds_with_a_stuck_request_and_a_training_round(
    tiny256_checkpoint, mni_template, tmp_path
):
    studies = write_mni_subjects(tmp_path / "studies", mni_template, count=3, unlabelled=1)
    large = np.random.default_rng(0).normal(size=(160, 160, 160)).astype(np.float32)  # 16 MiB, uncompressed
    write_volume(studies / "large.nii", large)
    process, url, log = _start(studies, tmp_path, tiny256_checkpoint, "first.log")
    try:
        # A long round: far more epochs than the grace period allows.
        started = requests.post(f"{url}/train/{SEMANTIC}", json={"epochs": 500}, timeout=30)
        assert started.status_code == 200, started.text
        deadline = time.monotonic() + 60
        children = []
        while not children:
            children = psutil.Process(process.pid).children(recursive=True)
            assert time.monotonic() < deadline, "no training process started"
            time.sleep(0.2)
        time.sleep(3)  # into the round (features, first epochs)
        stalled = _stalled_download(url, "large")
        time.sleep(1)

        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 20 s after SIGTERM:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
        stopped_in = time.monotonic() - sent
        stalled.close()
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "training outlived the server"
        assert stopped_in < 15, stopped_in
    finally:
        if process.poll() is None:
            process.kill()
        log.close()

    # The next start recovers: no version was half made, the lock is free, a round trains to the end.
    versions = tmp_path / "cache" / "semantic" / "versions"
    assert not versions.exists() or not [p for p in versions.iterdir() if p.name.startswith(".")]
    process, url, log = _start(studies, tmp_path, tiny256_checkpoint, "second.log")
    try:
        assert requests.post(f"{url}/train/{SEMANTIC}", json={"epochs": 1}, timeout=30).status_code == 200
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            stats = requests.get(f"{url}/info/", timeout=10).json()["train_stats"][SEMANTIC]
            if stats.get("versions"):
                break
            time.sleep(1)
        assert stats.get("versions"), json.dumps(stats)
        assert stats["versions"][0]["version"] == "v0001"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
