"""Checkpoint resolution and the verified, resumable download, against a file server on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
from dataclasses import replace

import pytest

from medicosam_app.model import checkpoints
from medicosam_app.model.checkpoints import MEDICOSAM_VIT_B, download_weights, file_xxh128, resolve_checkpoint
from medicosam_app.errors import CheckpointError, ModelUnavailableError


def test_published_registry_matches_reference():
    assert MEDICOSAM_VIT_B.xxh128 == "40169f1e3c03a4b67bff58249c176d92"
    assert MEDICOSAM_VIT_B.url == "https://owncloud.gwdg.de/index.php/s/f5Ol4FrjPQWfjUF/download"


def test_local_file_with_another_hash_loads_as_custom_finetune_with_warning(tiny_checkpoint, tmp_path):
    resolved = resolve_checkpoint(MEDICOSAM_VIT_B, tiny_checkpoint, cache_dir=tmp_path)
    assert resolved.source == "path" and not resolved.official
    assert "custom finetune" in resolved.warning and MEDICOSAM_VIT_B.xxh128 in resolved.warning


def test_file_with_the_published_hash_is_official(tiny_checkpoint, tmp_path):
    weights = replace(MEDICOSAM_VIT_B, xxh128=file_xxh128(tiny_checkpoint))
    resolved = resolve_checkpoint(weights, tiny_checkpoint, cache_dir=tmp_path)
    assert resolved.official and resolved.warning is None


def test_missing_explicit_path_names_url_hash_and_place(tmp_path):
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint(MEDICOSAM_VIT_B, tmp_path / "nope.pt", cache_dir=tmp_path)
    message = str(error.value)
    assert MEDICOSAM_VIT_B.url in message and MEDICOSAM_VIT_B.xxh128 in message
    assert str(tmp_path / "vit_b_medicosam.pt") in message


def test_offline_without_file_says_what_to_do(tmp_path):
    with pytest.raises(ModelUnavailableError) as error:
        resolve_checkpoint(MEDICOSAM_VIT_B, None, cache_dir=tmp_path, allow_download=False)
    assert MEDICOSAM_VIT_B.url in str(error.value) and "MEDICOSAM_CHECKPOINT" in str(error.value)


def test_cached_file_is_found_without_download(tiny_checkpoint, tmp_path):
    (tmp_path / "vit_b_medicosam.pt").write_bytes(tiny_checkpoint.read_bytes())
    resolved = resolve_checkpoint(MEDICOSAM_VIT_B, None, cache_dir=tmp_path, allow_download=False)
    assert resolved.source == "cache"


class _RangeFileServer(http.server.BaseHTTPRequestHandler):
    """Serves one payload with HTTP Range support; can cut the first response short to simulate a drop."""

    payload = b""
    cut_first_at = None
    requests_seen: list = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        start = 0
        header = self.headers.get("Range")
        type(self).requests_seen.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_first_at is not None:
            body, type(self).cut_first_at = body[: type(self).cut_first_at], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeFileServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RangeFileServer.requests_seen = []
    yield server, f"http://127.0.0.1:{server.server_address[1]}/weights"
    server.shutdown()


def test_download_resumes_after_a_dropped_connection_and_verifies(file_server, tiny_checkpoint, tmp_path):
    _, url = file_server
    data = tiny_checkpoint.read_bytes()
    _RangeFileServer.payload, _RangeFileServer.cut_first_at = data, len(data) // 3
    weights = replace(MEDICOSAM_VIT_B, url=url, xxh128=file_xxh128(tiny_checkpoint))
    path = download_weights(weights, tmp_path / "vit_b_medicosam.pt", backoff_s=0)
    assert path.read_bytes() == data
    assert _RangeFileServer.requests_seen[0] is None and _RangeFileServer.requests_seen[1].startswith("bytes=")
    assert not (tmp_path / "vit_b_medicosam.pt.part").exists()


def test_download_with_wrong_hash_leaves_no_file(file_server, tmp_path):
    _, url = file_server
    _RangeFileServer.payload, _RangeFileServer.cut_first_at = b"not the weights" * 100, None
    weights = replace(MEDICOSAM_VIT_B, url=url)
    with pytest.raises(CheckpointError, match="expected 40169f1e"):
        download_weights(weights, tmp_path / "vit_b_medicosam.pt", retries=2, backoff_s=0)
    assert list(tmp_path.iterdir()) == []


def test_resolve_downloads_into_the_cache(file_server, tiny_checkpoint, tmp_path, monkeypatch):
    _, url = file_server
    _RangeFileServer.payload, _RangeFileServer.cut_first_at = tiny_checkpoint.read_bytes(), None
    weights = replace(MEDICOSAM_VIT_B, url=url, xxh128=file_xxh128(tiny_checkpoint))
    monkeypatch.setenv(checkpoints.CACHE_DIR_ENV, str(tmp_path))
    resolved = resolve_checkpoint(weights)
    assert resolved.source == "download" and resolved.path == tmp_path / "vit_b_medicosam.pt"
