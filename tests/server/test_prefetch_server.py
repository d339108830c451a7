"""The gesture every annotator makes, at the server's default settings (prefetch on, radius 16, 1 s quiet):
click slice k, scroll to k+1 while the background worker is encoding it, click, then k-1. Each click is
answered, and the worker carries on afterwards. An encoder slow enough (~1 s a slice) that the second click
really lands in the middle of the prefetch of its slice."""

from __future__ import annotations

import dataclasses
import time

import pytest
import requests

from conftest import asymmetric_array, write_volume
from medicosam_app.model.random_checkpoint import TINY_SAM, write_random_checkpoint

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
SLICER = {"result_extension": ".nrrd", "result_dtype": "uint8"}

# Wider and deeper than the tiny test model: about a second per slice on two cores, still seconds to build.
SLOW_SAM = dataclasses.replace(TINY_SAM, encoder_embed_dim=384, encoder_depth=2, encoder_num_heads=6)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefetch")
    studies = folder / "studies"
    studies.mkdir()
    write_volume(studies / "ct.nii.gz", asymmetric_array((48, 36, 20), seed=5))
    checkpoint = write_random_checkpoint(folder / "slow_sam.pt", SLOW_SAM, seed=0)
    with running_server(studies, folder / "server.log", env={"MEDICOSAM_CHECKPOINT": str(checkpoint)}) as url:
        assert wait_for_model(url)["available"]
        yield url, folder


def _prefetch(url: str) -> dict:
    return requests.get(f"{url}/info/", timeout=10).json()["models"]["medicosam_interactive"]["prefetch"]


def test_click_then_scroll_to_the_slice_being_prefetched_and_click_again(server):
    url, folder = server
    client = slicer_client(url, folder / "client")
    k = 10

    def click(index: int) -> dict:
        started = time.monotonic()
        _, answer = client.infer("medicosam_interactive", "ct", {"foreground": [[20, 15, index]], "slice": index, **SLICER})
        answer["seconds"] = time.monotonic() - started
        return answer

    first = click(k)
    assert first["slice"] == k

    # After the quiet second the worker starts on k+1 (nearest first); click k+1 while it runs.
    deadline = time.monotonic() + 30
    while not _prefetch(url)["running"]:
        assert time.monotonic() < deadline, f"the prefetch never started: {_prefetch(url)}"
        time.sleep(0.02)
    second = click(k + 1)
    third = click(k - 1)
    assert (second["slice"], third["slice"]) == (k + 1, k - 1)
    # One encode at most each: the answer never waits on a cycle (a hang used to time out here).
    single_encode = first["latencies"]["encode"]
    for answer in (second, third):
        assert answer["seconds"] < 10 * single_encode + 5, (answer, single_encode)

    # The worker is not stuck: it keeps encoding the neighbours afterwards.
    encoded_before = _prefetch(url)["encoded"]
    deadline = time.monotonic() + 60
    while _prefetch(url)["encoded"] <= encoded_before:
        assert time.monotonic() < deadline, f"the prefetch worker is stuck: {_prefetch(url)}"
        time.sleep(0.2)
