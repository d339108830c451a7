"""The README's start command, as written there: ``./scripts/start_server.sh --port P --studies DIR --conf checkpoint
FILE`` starts the server on 127.0.0.1, with the malloc tuning it sets up, says in ``/info`` what it chose for the
encoder, and a click is answered.

(Other server tests start ``monailabel start_server`` the way the script does, with more control over the
environment; this one runs the script itself, so the command a newcomer copies is the one tested.)
"""

from __future__ import annotations

import os

import requests

from conftest import asymmetric_array, write_volume
from medicosam_app.runtime.heap import is_glibc

from .harness import REPO, free_port, running_process, wait_for_model


def test_the_documented_start_command_serves_a_click(tmp_path, tiny_checkpoint):
    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(studies / "ct.nii.gz", asymmetric_array())
    port = free_port()
    command = [str(REPO / "scripts" / "start_server.sh"), "--port", str(port), "--studies", str(studies),
               "--conf", "checkpoint", str(tiny_checkpoint)]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MEDICOSAM_")}
    environment.update({"MEDICOSAM_CACHE_DIR": str(tmp_path / "cache"), "MEDICOSAM_DOWNLOAD": "false",
                        "MEDICOSAM_PRECISION": "fp32"})
    url = f"http://127.0.0.1:{port}"
    with running_process("start_server.sh", command, tmp_path / "server.log", f"{url}/info/", timeout=300,
                         env=environment) as process:
        status = wait_for_model(url)
        assert status["state"] == "ready"
        # What the server chose at load, with defaults, on a CPU (the GPU's choices: benchmarks/gpu_check.py)
        assert status["device"] == "cpu" and status["encode_batch"]["chosen"] == 1
        assert status["attention"]["form"] == "mask"
        assert status["compile"]["state"] == "off"
        assert isinstance(status["embedding_storage"]["half"], bool) and status["embedding_storage"]["mean_mask_iou"] > 0
        answer = requests.post(f"{url}/infer/medicosam_interactive", params={"image": "ct"},
                               data={"params": '{"foreground": [[30, 7, 5]], "result_compress": false}'}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert b'"slice": 5' in answer.content  # the answer's JSON part: the clicked slice
        if is_glibc():  # as the script promises: one malloc arena for every thread (medicosam_app/runtime/heap.py)
            with open(f"/proc/{process.pid}/environ", "rb") as environ:
                variables = dict(item.split(b"=", 1) for item in environ.read().split(b"\0") if b"=" in item)
            assert b"glibc.malloc.arena_max=1" in variables.get(b"GLIBC_TUNABLES", b"")
