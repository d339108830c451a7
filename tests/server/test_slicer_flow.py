"""The 3D Slicer path through the real server: info, image download, SmartEdit clicks and boxes, label save.

Everything goes through the Slicer module's own client library (MONAILabelLib.client), with the params
the module sends. The model is a tiny random-weight SAM made by the test; the geometry is an oblique,
anisotropic, asymmetric volume so a transposed or flipped answer cannot pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array, write_volume
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from medicosam_app.runtime.heap import is_glibc

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
SPACING, ORIGIN = (0.7, 1.3, 3.0), (10.0, -20.0, 5.0)
SLICER_INFER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("studies")
    write_volume(folder / "oblique.nii.gz", asymmetric_array(), spacing=SPACING, origin=ORIGIN)
    write_volume(folder / "other.nii.gz", asymmetric_array((24, 20, 6), seed=5))
    return folder


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with running_server(studies, log, env={"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint)}) as url:
        assert wait_for_model(url)["available"], log.read_text()[-2000:]
        yield url


@pytest.fixture()
def client(server, tmp_path):
    return slicer_client(server, tmp_path / "client")


def _read(path):
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _click(client, image_id, params):
    return client.infer("medicosam_interactive", image_id, {**params, **SLICER_INFER_PARAMS})


def test_info_offers_a_2d_deepgrow_model_that_is_ready(client):
    info = client.info()
    model = info["models"]["medicosam_interactive"]
    assert model["type"] == "deepgrow" and model["dimension"] == 2  # Slicer SmartEdit, OHIF point prompts
    assert model["model_status"]["available"] is True
    assert "custom finetune" in model["model_status"]["warning"]  # the test checkpoint is not the published one
    assert set(client.datastore()["objects"]) == {"oblique", "other"}
    if is_glibc():  # started as scripts/start_server.sh starts it: every thread on one malloc arena
        assert model["malloc_tuning"]["applied"] is True and model["malloc_tuning"]["all_threads"] is True


def test_image_download_serves_the_file_slicer_indexes(server, studies, tmp_path):
    response = requests.get(f"{server}/datastore/image", params={"image": "oblique"}, timeout=10)
    assert response.ok
    downloaded = tmp_path / "oblique.nii.gz"
    downloaded.write_bytes(response.content)
    image, array = _read(downloaded)
    assert np.allclose(array, asymmetric_array())
    assert np.allclose(image.GetDirection(), OBLIQUE_AXIAL_DIRECTION)


def test_click_returns_a_label_in_the_image_geometry_on_the_clicked_slice_only(client, studies, tiny_checkpoint):
    i, j, k = 30, 7, 5
    result_file, params = _click(client, "oblique", {"label": "tumour", "foreground": [[i, j, k]], "background": [], "slice": k, "reset_state": True})
    image, label = _read(result_file)
    assert label.shape == (40, 30, 12)
    assert np.allclose(image.GetSpacing(), SPACING) and np.allclose(image.GetOrigin(), ORIGIN)
    assert np.allclose(image.GetDirection(), OBLIQUE_AXIAL_DIRECTION)
    assert params["label_names"] == {"tumour": 1} and params["slice"] == k
    assert {"pre", "encode", "decode", "total"} <= set(params["latencies"])

    # The same click in-process with the same checkpoint: the server must answer voxel for voxel the same.
    expected = InteractiveSegmenter(ModelProvider(str(tiny_checkpoint))).segment(
        studies / "oblique.nii.gz", requested({"foreground": [[i, j, k]], "slice": k}), ClickContext("oblique")
    ).label
    assert expected.any() and not expected.all(), "the test model should give a partial mask here"
    assert np.array_equal(label, expected)
    assert set(np.argwhere(label)[:, 2]) == {k}


def test_second_click_on_a_slice_does_not_re_encode(client):
    params = {"label": "organ", "foreground": [[10, 10, 3]], "slice": 3, "reset_state": True}
    _, first = _click(client, "other", params)
    _, second = _click(client, "other", {**params, "background": [[20, 15, 3]], "reset_state": False})
    assert first["latencies"]["embedding_cached"] is False
    assert second["latencies"]["embedding_cached"] is True


def test_roi_box_on_the_current_slice(client):
    result_file, params = _click(client, "oblique", {"label": "box", "foreground": [], "background": [], "roi": [25, 10, 20, 4, 4, 6], "slice": 5})
    _, label = _read(result_file)
    assert params["slice"] == 5 and set(np.argwhere(label)[:, 2]) <= {5}


def test_ohif_points_without_slice_key_use_the_points_slice(server):
    """OHIF's extension sends only the last clicked slice's points and no 'slice'."""
    response = requests.post(
        f"{server}/infer/medicosam_interactive",
        params={"image": "oblique", "output": "image"},
        files={"params": (None, json.dumps({"foreground": [[30, 7, 8]], "background": []}))},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.content[:2] == b"\x1f\x8b"  # gzip: a .nii.gz label


def test_save_final_label_as_slicer_does(client, server, tmp_path):
    label = np.zeros((40, 30, 12), dtype=np.uint8)
    label[5:15, 3:9, 4] = 1
    path = write_volume(tmp_path / "label.nii.gz", label, spacing=SPACING, origin=ORIGIN)
    client.save_label("oblique", str(path), tag="final", params={"label_info": [{"name": "tumour", "idx": 1}]})
    store = client.datastore()["objects"]["oblique"]["labels"]
    assert "final" in store
    response = requests.get(f"{server}/datastore/label", params={"label": "oblique", "tag": "final"}, timeout=10)
    saved = tmp_path / "saved.nii.gz"
    saved.write_bytes(response.content)
    assert np.array_equal(_read(saved)[1], label)


BAD_REQUESTS = [
    ("oblique", {"foreground": [[400, 7, 5]], "slice": 5}, 422, "outside the image"),
    ("oblique", {"foreground": [["x", 7, 5]], "slice": 5}, 422, "must be a number"),
    ("oblique", {"foreground": [[float("nan"), 7, 5]], "slice": 5}, 422, "finite"),
    ("oblique", {"foreground": [], "background": []}, 422, "No prompt"),
    ("oblique", {"roi": [5, 5, 2, 9, 0, 6], "slice": 3}, 422, "flat"),
    ("oblique", {"roi": [100, 120, 2, 9, 0, 6], "slice": 3}, 422, "outside the image"),
    ("oblique", {"foreground": [[3, 3, 3]], "slice": 99}, 422, "outside the image"),
    ("no-such-image", {"foreground": [[3, 3, 3]], "slice": 3}, 404, "not in the datastore"),
    ("/etc/passwd", {"foreground": [[3, 3, 3]], "slice": 3}, 404, "not in the datastore"),
]


@pytest.mark.parametrize("image_id, params, status, message", BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, image_id, params, status, message):
    response = requests.post(
        f"{server}/infer/medicosam_interactive",
        params={"image": image_id},
        # json.dumps writes NaN, as a JavaScript client would not; the server must still answer cleanly
        files={"params": (None, json.dumps(params))},
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    ok = requests.post(
        f"{server}/infer/medicosam_interactive",
        params={"image": "oblique", "output": "json"},
        files={"params": (None, json.dumps({"foreground": [[30, 7, 5]], "slice": 5}))},
        timeout=60,
    )
    assert ok.status_code == 200 and ok.json()["slice"] == 5


def test_saving_a_label_of_the_wrong_size_is_refused_and_nothing_is_lost(client, server, tmp_path):
    wrong = write_volume(tmp_path / "wrong.nii.gz", np.ones((10, 10, 10), dtype=np.uint8))
    response = requests.put(
        f"{server}/datastore/label",
        params={"image": "other", "tag": "final"},
        data={"params": json.dumps({"label_info": [{"name": "x", "idx": 1}]})},
        files={"label": ("wrong.nii.gz", wrong.read_bytes())},
        timeout=10,
    )
    assert response.status_code == 422 and "size" in response.json()["detail"]
    assert "final" not in client.datastore()["objects"]["other"]["labels"]


def _anonymous_click(server, params):
    """A click as OHIF's extension and simple scripts send it: no client_id."""
    response = requests.post(
        f"{server}/infer/medicosam_interactive",
        params={"image": "oblique", "output": "image"},
        files={"params": (None, json.dumps({"label": "shared", **params}))},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    label = sitk.GetArrayFromImage(sitk.ReadImage(_write(response.content))).transpose(2, 1, 0)
    return label


def _write(content: bytes) -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile(suffix=".nii.gz", delete=False)
    handle.write(content)
    handle.close()
    return handle.name


def test_annotators_without_client_id_do_not_refine_each_others_masks(server, studies, tiny_checkpoint):
    """Two OHIF users on one slice of one image, neither sending client_id: each answer is what the
    prompts alone give, whoever clicked in between (a shared "default" state would feed one user's
    logits into the other's mask)."""
    first = {"foreground": [[30, 7, 5]], "background": [], "slice": 5}
    second = {"foreground": [[12, 20, 5]], "background": [[30, 7, 5]], "slice": 5}
    reference = InteractiveSegmenter(ModelProvider(str(tiny_checkpoint)))
    expected = {
        name: reference.segment(studies / "oblique.nii.gz", requested(params), ClickContext("oblique")).label
        for name, params in (("first", first), ("second", second))
    }
    assert not np.array_equal(expected["first"], expected["second"]), "the two prompts should differ"
    for params, name in ((first, "first"), (second, "second"), (first, "first"), (second, "second")):
        assert np.array_equal(_anonymous_click(server, params), expected[name]), name
