"""A client that hangs up on a long 3D request: the server stops the propagation at the next slice instead of
walking the whole axis, and serves the next request at once. Checked in the server's log, on the real server."""

from __future__ import annotations

import json
import time

import numpy as np
import requests

from conftest import write_volume

from .harness import running_server, wait_for_model

SLICES = 600


def _log_has(log, text: str, timeout_s: float) -> float:
    """Seconds until the server log holds ``text`` (fails after ``timeout_s``)."""
    started = time.monotonic()
    while text not in log.read_text():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"'{text}' not logged in {timeout_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_hung_up_3d_request_stops_its_walk(tmp_path, tiny_checkpoint):
    studies = tmp_path / "studies"
    studies.mkdir()
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 1, (48, 40, SLICES)).astype(np.float32)
    volume[10:30, 8:28, :] += 5  # a tube through every slice: nothing stops the walk but the client
    write_volume(studies / "long.nii.gz", volume)
    log = tmp_path / "server.log"
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(studies, log, env=env) as url:
        assert wait_for_model(url)["available"]
        params = {"foreground": [[20, 18, 300]], "iou_threshold": 0, "min_predicted_iou": 0, "client_id": "c"}
        try:
            requests.post(f"{url}/infer/medicosam_3d", params={"image": "long", "output": "json"},
                          files={"params": (None, json.dumps(params))}, timeout=3)
            raise AssertionError("the 600-slice walk answered within 3 s: make the volume longer")
        except requests.Timeout:
            pass  # the client hangs up, as a closed viewer tab does
        _log_has(log, "the client went away", timeout_s=10)
        _log_has(log, "Work stopped: its client closed the connection", timeout_s=10)
        assert "medicosam_3d: slices" not in log.read_text()  # the walk never finished
        started = time.monotonic()
        click = {"foreground": [[20, 18, 5]], "client_id": "d"}
        answer = requests.post(f"{url}/infer/medicosam_interactive", params={"image": "long", "output": "json"},
                               files={"params": (None, json.dumps(click))}, timeout=60)
        assert answer.status_code == 200 and time.monotonic() - started < 30
