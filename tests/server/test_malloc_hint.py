"""A server started without scripts/start_server.sh says how to get the whole malloc tuning."""

from __future__ import annotations

import pytest
import requests

from conftest import asymmetric_array, write_volume
from medicosam_app.runtime.heap import HeapTuning, is_glibc

from .harness import running_server

pytestmark = [pytest.mark.server, pytest.mark.skipif(not is_glibc(), reason="malloc tuning is for glibc")]


def test_started_without_the_tunables_info_says_so_and_the_log_says_what_to_export(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(studies / "vol.nii.gz", asymmetric_array())
    log = tmp_path / "server.log"
    with running_server(studies, log, env={"MEDICOSAM_CACHE_DIR": str(tmp_path / "cache")}, malloc_tunables=False) as url:
        state = requests.get(f"{url}/info/", timeout=10).json()["models"]["medicosam_interactive"]["malloc_tuning"]
    assert state["applied"] is True and state["all_threads"] is False  # mallopt ran; the arenas were already bound
    text = log.read_text()
    assert "scripts/start_server.sh" in text and f"GLIBC_TUNABLES={HeapTuning().as_tunables()}" in text
