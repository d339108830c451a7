"""The server's default ``precision auto``: measured at model load, shown in /info, remembered for the next start."""

from __future__ import annotations

import pytest
import requests
import torch

from conftest import asymmetric_array, write_volume

from medicosam_app.model.precision_choice import candidate_precisions

from .harness import running_server, wait_for_model

pytestmark = pytest.mark.server


def test_auto_precision_is_measured_shown_and_remembered(tiny_checkpoint, tmp_path):
    (tmp_path / "studies").mkdir()
    write_volume(tmp_path / "studies" / "image.nii.gz", asymmetric_array())
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PRECISION": "auto",
           "MEDICOSAM_CACHE_DIR": str(tmp_path / "cache"), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(tmp_path / "studies", tmp_path / "first.log", env=env) as url:
        status = wait_for_model(url)
        choice = status["precision_choice"]
        assert status["available"] and status["precision"] == choice["chosen"] in ("fp32", "bf16", "int8")
        assert set(choice["encoder_ms"]) == set(candidate_precisions(torch.device("cpu")))
        assert choice["reason"] and not choice["from_cache"]
        assert choice["device"].startswith("cpu: ") and choice["torch"]
        response = requests.post(f"{url}/infer/medicosam_interactive", params={"image": "image", "output": "json"},
                                 files={"params": (None, '{"foreground": [[30, 7, 5]]}')}, timeout=60)
        assert response.status_code == 200, response.text
    with running_server(tmp_path / "studies", tmp_path / "second.log", env=env) as url:
        again = wait_for_model(url)["precision_choice"]
        assert again["from_cache"] and again["chosen"] == choice["chosen"] and again["encoder_ms"] == choice["encoder_ms"]
