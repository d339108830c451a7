"""Without usable weights the server still starts, /info says why, and a click gets 503 with directions."""

from __future__ import annotations

import json

import pytest
import requests

from conftest import asymmetric_array, write_volume
from medicosam_app.checkpoints import MEDICOSAM_VIT_B

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
