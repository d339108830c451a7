"""``medicosam_3d`` through the real server and the Slicer module's client: geometry, confidence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array, write_volume
from medicosam_app.api import PropagationFields
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext
from medicosam_app.model.provider import ModelProvider
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
SPACING, ORIGIN = (0.7, 1.3, 3.0), (10.0, -20.0, 5.0)
SLICER = {"result_extension": ".nrrd", "result_dtype": "uint8"}
PERMISSIVE = {"iou_threshold": 0.0, "min_predicted_iou": 0.0}  # a random test model: walk until the mask is empty


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    write_volume(folder / "oblique.nii.gz", asymmetric_array(), spacing=SPACING, origin=ORIGIN)
    return folder


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(studies, log, env=env) as url:
        assert wait_for_model(url)["available"]
        yield url


def _in_process(tiny_checkpoint, studies, params):
    models = ModelProvider(str(tiny_checkpoint), allow_download=False)
    segmenter = VolumeSegmenter(models, SliceEmbedder(models))
    settings = PropagationFields.read(params).settings()
    return segmenter.segment(studies / "oblique.nii.gz", requested(params), ClickContext("oblique"), settings=settings)


def test_info_offers_a_3d_deepgrow_model(server):
    model = requests.get(f"{server}/info/", timeout=10).json()["models"]["medicosam_3d"]
    assert model["type"] == "deepgrow" and model["dimension"] == 3
    assert {"iou_threshold", "min_predicted_iou", "projection", "box_extension", "low_confidence"} <= set(model["config"])


def test_a_3d_answer_in_the_image_geometry_with_confidence_per_slice(server, studies, tiny_checkpoint, tmp_path):
    params = {"foreground": [[30, 7, 5]], "background": [], "label": "organ", "reset_state": True, **PERMISSIVE}
    path, answer = slicer_client(server, tmp_path).infer("medicosam_3d", "oblique", {**params, **SLICER})
    image = sitk.ReadImage(str(path))
    label = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    assert label.shape == (40, 30, 12)
    assert np.allclose(image.GetSpacing(), SPACING) and np.allclose(image.GetOrigin(), ORIGIN)
    assert np.allclose(image.GetDirection(), OBLIQUE_AXIAL_DIRECTION)

    low, high = answer["slice_range"]
    assert answer["prompted_slices"] == [5] and low <= 5 <= high
    assert sorted(int(k) for k in answer["predicted_iou"]) == list(range(low, high + 1))
    assert isinstance(answer["low_confidence_slices"], list)
    assert set(answer["low_confidence_slices"]) <= set(range(low, high + 1))
    assert set(answer["stopped"]) == {"below", "above"}
    assert set(np.flatnonzero(label.any(axis=(0, 1)))) <= set(range(low, high + 1))

    expected = _in_process(tiny_checkpoint, studies, params)
    assert np.array_equal(label, expected.label)
    assert answer["low_confidence_slices"] == expected.result.low_confidence_slices


def test_a_3d_roi_bounds_the_answer(server, tmp_path):
    params = {"foreground": [[30, 7, 5]], "roi": [20, 39, 0, 20, 7, 3], "label": "roi", "reset_state": True, **PERMISSIVE}
    response = requests.post(
        f"{server}/infer/medicosam_3d", params={"image": "oblique", "output": "json"},
        files={"params": (None, json.dumps(params))}, timeout=120,
    )
    if response.status_code == 422:  # the random model may see nothing inside this box: a clear refusal is right
        assert "found nothing" in response.json()["detail"]
        return
    assert response.status_code == 200, response.text
    low, high = response.json()["slice_range"]
    assert 3 <= low <= high <= 7


def test_a_correction_on_a_propagated_slice_keeps_the_rest(server, tmp_path):
    client = slicer_client(server, tmp_path, client_id="corrector")
    base = {"label": "c", **PERMISSIVE, **SLICER}
    _, first = client.infer("medicosam_3d", "oblique", {**base, "foreground": [[30, 7, 5]], "reset_state": True})
    low, high = first["slice_range"]
    if high == 5:
        pytest.skip("the random test model did not propagate above slice 5")
    target = min(high, 7)
    _, second = client.infer("medicosam_3d", "oblique", {**base, "foreground": [[30, 7, 5], [30, 7, target]]})
    assert second["prompted_slices"] == [5, target]
    assert second["recomputed_slices"] and min(second["recomputed_slices"]) > 5, "slices at and below 5 are kept"


def test_a_background_point_on_a_propagated_slice_is_a_correction_there(server, studies, tiny_checkpoint, tmp_path):
    """As Slicer sends it after a propagation leaked on slice 9: every point, the new one background only."""
    client = slicer_client(server, tmp_path, client_id="leak-fixer")
    base = {"label": "leak", **PERMISSIVE, **SLICER}
    client.infer("medicosam_3d", "oblique", {**base, "foreground": [[30, 7, 5]], "reset_state": True})
    params = {**base, "foreground": [[30, 7, 5]], "background": [[28, 9, 9]]}
    path, answer = client.infer("medicosam_3d", "oblique", params)
    assert answer["prompted_slices"] == [5] and answer["corrected_slices"] == [9]
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    expected = _in_process(tiny_checkpoint, studies, params)
    assert np.array_equal(label, expected.label), "the server applies the correction as the core does"


BAD = [
    ({"roi": [100, 120, 2, 9, 0, 6]}, 422, "outside the image"),
    ({"foreground": [], "background": []}, 422, "No prompt"),
    ({"foreground": [[30, 7, 5]], "iou_threshold": 7}, 422, "between 0 and 1"),
    ({"foreground": [[30, 7, 5]], "projection": "lasso"}, 422, "projection"),
    ({"background": [[30, 7, 5]]}, 422, "Only background points"),
]


@pytest.mark.parametrize("params, status, message", BAD)
def test_bad_3d_prompts_get_a_clear_4xx(server, params, status, message):
    response = requests.post(
        f"{server}/infer/medicosam_3d", params={"image": "oblique"},
        files={"params": (None, json.dumps(params))}, timeout=60,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
