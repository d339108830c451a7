"""Without usable weights the server still starts, /info says why, and a click gets 503 with directions."""

from __future__ import annotations

import json
import time

import pytest
import requests

from conftest import asymmetric_array, write_volume
from medicosam_app.model.checkpoints import MEDICOSAM_VIT_B

from .harness import running_server, wait_for_model

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    write_volume(folder / "vol.nii.gz", asymmetric_array())
    return folder


def _click(url):
    return requests.post(
        f"{url}/infer/medicosam_interactive",
        params={"image": "vol"},
        files={"params": (None, json.dumps({"foreground": [[3, 3, 3]], "slice": 3}))},
        timeout=60,
    )


def test_offline_start_without_checkpoint(studies, tmp_path):
    cache = tmp_path / "empty-cache"
    with running_server(studies, tmp_path / "server.log", env={"MEDICOSAM_CACHE_DIR": str(cache)}) as url:
        status = wait_for_model(url)
        assert status["available"] is False and status["state"] == "unavailable"
        for fact in (MEDICOSAM_VIT_B.url, MEDICOSAM_VIT_B.xxh128, str(cache / "vit_b_medicosam.pt")):
            assert fact in status["reason"]
        response = _click(url)
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert MEDICOSAM_VIT_B.url in detail and MEDICOSAM_VIT_B.xxh128 in detail
        assert requests.get(f"{url}/datastore/", timeout=5).ok  # the rest of the server works


@pytest.mark.parametrize("content, reason", [(b"\x00garbage" * 100, "not a readable PyTorch checkpoint")])
def test_corrupt_checkpoint_via_conf_is_reported(studies, tmp_path, content, reason):
    corrupt = tmp_path / "vit_b_medicosam.pt"
    corrupt.write_bytes(content)
    with running_server(studies, tmp_path / "server.log", conf={"checkpoint": str(corrupt)}) as url:
        status = wait_for_model(url)
        assert status["available"] is False and reason in status["reason"]
        assert _click(url).status_code == 503


def test_wrong_checkpoint_is_reported(studies, tmp_path):
    import torch

    wrong = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with running_server(studies, tmp_path / "server.log", env={"MEDICOSAM_CHECKPOINT": str(wrong)}) as url:
        status = wait_for_model(url)
        assert "not a SAM checkpoint" in status["reason"]
        assert _click(url).status_code == 503


class TricklingWeightsServer:
    """A mirror on 127.0.0.1 that sends a 'checkpoint' a little at a time: a download that takes a while."""

    def __init__(self, size: int = 64 << 20, chunk: int = 64 << 10, pause_s: float = 0.05) -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    for _ in range(size // chunk):
                        if outer.stopped.is_set():
                            return
                        self.wfile.write(b"\0" * chunk)
                        time.sleep(pause_s)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.stopped = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/vit_b_medicosam.pt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.stopped.set()
        self.httpd.shutdown()


def test_a_click_while_the_weights_download_answers_503_loading_at_once(studies, tmp_path):
    mirror = TricklingWeightsServer()
    env = {"MEDICOSAM_CACHE_DIR": str(tmp_path / "cache"), "MEDICOSAM_DOWNLOAD": "true",
           "MEDICOSAM_WEIGHTS_URL": mirror.url}
    try:
        with running_server(studies, tmp_path / "server.log", env=env) as url:
            deadline = time.monotonic() + 30
            while True:
                status = requests.get(f"{url}/info/", timeout=5).json()["models"]["medicosam_interactive"]["model_status"]
                if "downloading" in str(status.get("reason")):
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            assert status["state"] == "loading" and "MiB" in status["reason"]
            started = time.monotonic()
            response = _click(url)
            answered_in = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert "loading" in response.json()["detail"] and "downloading vit_b_medicosam.pt" in response.json()["detail"]
            assert response.headers.get("Retry-After")
            assert answered_in < 5, f"the click waited for the download ({answered_in:.1f} s)"
            assert requests.get(f"{url}/datastore/", timeout=5).ok
    finally:
        mirror.close()
