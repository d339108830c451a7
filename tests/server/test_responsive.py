"""The server stays responsive and correct under load: /info during encodings, several clients at once,
prefetched neighbours, and the disk embedding cache across a restart. All through the real server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import asymmetric_array, write_volume
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
SLICER = {"result_extension": ".nrrd", "result_dtype": "uint8"}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    write_volume(folder / "ct.nii.gz", asymmetric_array((48, 36, 14), seed=11))
    return folder


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, server_dir):
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "1"}
    with running_server(studies, server_dir / "server.log", env=env) as url:
        assert wait_for_model(url)["available"]
        yield url


def _labels(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


def test_info_keeps_answering_while_slices_are_encoded(server, tmp_path):
    client = slicer_client(server, tmp_path / "c")
    finished = []  # completion times of /info calls
    done_clicks = []
    stop = threading.Event()

    def poll_info():
        while not stop.is_set():
            requests.get(f"{server}/info/", timeout=30).raise_for_status()
            finished.append(time.monotonic())

    poller = threading.Thread(target=poll_info)
    poller.start()
    try:
        for k in (0, 4, 8, 12):  # four cold slices (prefetch radius 1 cannot reach them)
            _, params = client.infer("medicosam_interactive", "ct", {"foreground": [[20, 15, k]], "slice": k, **SLICER})
            assert params["latencies"]["embedding_source"] == "encoded"
            done_clicks.append(time.monotonic())
    finally:
        stop.set()
        poller.join()
    during = [t for t in finished if done_clicks[0] < t < done_clicks[-1]]
    # A blocked event loop would let at most one /info through between two clicks.
    assert len(during) >= 10, f"only {len(during)} /info answers while 3 encodings ran"


def test_clicks_from_several_clients_at_once_get_their_own_masks(server, studies, tiny_checkpoint, tmp_path):
    clicks = [
        ("alice", [[10, 8, 2]], 2),
        ("bob", [[30, 20, 2]], 2),  # same slice as alice, another place
        ("carol", [[40, 30, 6]], 6),
        ("dave", [[5, 25, 10]], 10),
        ("erin", [[25, 5, 13]], 13),
    ]

    def click(entry):
        client_id, points, k = entry
        client = slicer_client(server, tmp_path / client_id, client_id=client_id)
        path, params = client.infer(
            "medicosam_interactive", "ct", {"foreground": points, "slice": k, "reset_state": True, "label": client_id, **SLICER}
        )
        return _labels(path), params

    with ThreadPoolExecutor(len(clicks)) as pool:
        answers = list(pool.map(click, clicks))

    reference = InteractiveSegmenter(ModelProvider(str(tiny_checkpoint), allow_download=False))
    for (client_id, points, k), (label, params) in zip(clicks, answers):
        expected = reference.segment(studies / "ct.nii.gz", requested({"foreground": points, "slice": k}), ClickContext("ct", client_id)).label
        assert params["label_names"] == {client_id: 1} and params["slice"] == k
        assert np.array_equal(label, expected), client_id


def test_neighbours_of_a_click_are_prefetched(server, tmp_path):
    client = slicer_client(server, tmp_path / "p", client_id="prefetch")
    _, first = client.infer("medicosam_interactive", "ct", {"foreground": [[20, 15, 3]], "slice": 3, **SLICER})
    deadline = time.monotonic() + 60
    while requests.get(f"{server}/info/", timeout=10).json()["models"]["medicosam_interactive"]["prefetch"]["queued"] or \
            requests.get(f"{server}/info/", timeout=10).json()["models"]["medicosam_interactive"]["prefetch"]["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    _, second = client.infer("medicosam_interactive", "ct", {"foreground": [[20, 15, 4]], "slice": 4, **SLICER})
    assert second["latencies"]["embedding_source"] in ("memory", "disk")
    assert second["latencies"]["encode"] < first["latencies"]["encode"] or first["latencies"]["embedding_source"] != "encoded"


def test_a_restarted_server_reuses_embeddings_from_disk(studies, tiny_checkpoint, server_dir, tmp_path):
    """A second server on the same cache folder finds the slices the first one encoded."""
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    restart_dir = server_dir / "restart"
    restart_dir.mkdir()
    request = {"foreground": [[22, 9, 7]], "slice": 7, "reset_state": True, **SLICER}
    answers = []
    for run in range(2):
        with running_server(studies, restart_dir / f"server{run}.log", env=env) as url:
            assert wait_for_model(url)["available"]
            path, params = slicer_client(url, tmp_path / f"r{run}").infer("medicosam_interactive", "ct", request)
            answers.append((_labels(path), params["latencies"]["embedding_source"]))
    assert [source for _, source in answers] == ["encoded", "disk"]
    assert np.array_equal(answers[0][0], answers[1][0])
    info_dir = restart_dir / "cache" / "embeddings"
    assert list(info_dir.rglob("*.npz")), "the embeddings live under the configured cache folder"
