"""``medicosam_instances`` through the real server and the Slicer module's client: the ``everything`` and
``boxes`` modes on an oblique, asymmetric image (label geometry, one record per instance, boxes that bound
their instances), 409 in ``semantic`` mode before a semantic model exists, and 422 for bad options. The
``semantic`` mode after training is tested with the active-learning loop (test_semantic_server.py), the
DICOM SEG of an instance label against Orthanc (test_dicomweb.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array, write_volume
from medicosam_app.api import InstanceRequest
from medicosam_app.instances.segmenter import InstanceSegmenter
from medicosam_app.model.provider import ModelProvider
from medicosam_app.semantic.segmenter import SemanticSegmenter
from medicosam_app.learning.versions import VersionStore
from medicosam_app.embeddings.slice_embedder import SliceEmbedder

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
TASK = "medicosam_instances"
SPACING, ORIGIN = (0.7, 1.3, 3.0), (10.0, -20.0, 5.0)
SLICER = {"result_extension": ".nrrd", "result_dtype": "uint8"}
GRID_PERMISSIVE = {"pred_iou_thresh": 0, "stability_score_thresh": 0, "min_area": 1}  # a random test model
DRAW_PERMISSIVE = {"iou_threshold": 0, "min_predicted_iou": 0}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    write_volume(folder / "oblique.nii.gz", asymmetric_array(), spacing=SPACING, origin=ORIGIN)
    return folder


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("instances")
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_CACHE_DIR": str(root / "cache")}
    with running_server(studies, root / "server.log", env=env) as url:
        assert wait_for_model(url)["available"]
        yield url


def _read(path):
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (40, 30, 12)
    assert np.allclose(image.GetSpacing(), SPACING) and np.allclose(image.GetOrigin(), ORIGIN)
    assert np.allclose(image.GetDirection(), OBLIQUE_AXIAL_DIRECTION)
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _check_records(label, answer):
    """Values 1..N, one record each, and every record true to the label it came with."""
    records = answer["instances"]
    assert sorted(np.unique(label[label > 0]).tolist()) == [r["id"] for r in records] == list(range(1, len(records) + 1))
    assert answer["label_names"] == {r["name"]: r["id"] for r in records}
    for record in records:
        i, j, k = np.nonzero(label == record["id"])
        assert record["box"] == [i.min(), i.max(), j.min(), j.max(), k.min(), k.max()]
        assert record["voxels"] == len(i)
        assert record["slice_range"][0] <= k.min() and k.max() <= record["slice_range"][1]
        assert {"class", "score", "predicted_iou", "stability"} <= set(record)


def test_info_lists_a_segmentation_task_with_its_modes(server):
    model = requests.get(f"{server}/info/", timeout=10).json()["models"][TASK]
    assert model["type"] == "segmentation" and model["dimension"] == 3
    assert model["modes"] == ["semantic", "everything", "boxes"] and model["config"]["mode"] == "semantic"
    assert model["config"]["points_per_side"] == 16 and model["semantic_version"] is None


def test_semantic_mode_before_training_says_what_to_do(server):
    response = requests.post(f"{server}/infer/{TASK}", params={"image": "oblique"}, timeout=60)
    assert response.status_code == 409, response.text
    assert "No semantic model has been trained yet" in response.json()["detail"]


def test_everything_on_one_slice_in_the_image_geometry(server, studies, tiny_checkpoint, tmp_path):
    params = {"mode": "everything", "slice": 7, "points_per_side": 8, **GRID_PERMISSIVE}
    path, answer = slicer_client(server, tmp_path).infer(TASK, "oblique", {**params, **SLICER})
    label = _read(path)
    assert answer["mode"] == "everything" and answer["slice"] == 7 and answer["instances"]
    assert set(np.flatnonzero(label.any(axis=(0, 1)))) == {7}  # only the asked-for slice
    _check_records(label, answer)
    assert all(r["class"] == "object" and r["slice_range"] == [7, 7] for r in answer["instances"])

    # The same request in-process on the same file: the server's answer is voxel for voxel the core's.
    models = ModelProvider(str(tiny_checkpoint), allow_download=False)
    embedder = SliceEmbedder(models)
    core = InstanceSegmenter(models, embedder, SemanticSegmenter(VersionStore(tmp_path / "none"), embedder))
    expected = core.segment(studies / "oblique.nii.gz", InstanceRequest.read(params).options())
    assert np.array_equal(label, expected.instances.label)


def test_everything_defaults_to_the_middle_slice(server, tmp_path):
    path, answer = slicer_client(server, tmp_path).infer(TASK, "oblique", {"mode": "everything", **GRID_PERMISSIVE, **SLICER})
    assert answer["slice"] == 6
    assert set(np.flatnonzero(_read(path).any(axis=(0, 1)))) <= {6}


def test_given_boxes_become_instances_inside_them_with_their_classes(server, tmp_path):
    boxes = [
        {"box": [2, 25, 3, 14, 2, 8], "class": "lesion", "score": 0.9},  # longer along i than j
        [22, 37, 16, 28, 5, 10],
    ]
    path, answer = slicer_client(server, tmp_path).infer(
        TASK, "oblique", {"mode": "boxes", "boxes": boxes, "class": "node", **DRAW_PERMISSIVE, **SLICER}
    )
    label = _read(path)
    _check_records(label, answer)
    assert answer["instances"], "the permissive test model draws something in at least one box"
    allowed = np.zeros(label.shape, dtype=bool)
    for box in ([2, 25, 3, 14, 2, 8], [22, 37, 16, 28, 5, 10]):
        allowed[box[0] : box[1] + 1, box[2] : box[3] + 1, box[4] : box[5] + 1] = True
    assert not (label > 0)[~allowed].any(), "nothing outside the given boxes"
    for record in answer["instances"]:
        given = [2, 25, 3, 14, 2, 8] if record["class"] == "lesion" else [22, 37, 16, 28, 5, 10]
        assert record["class"] in ("lesion", "node")
        assert all(given[2 * a] <= record["box"][2 * a] <= record["box"][2 * a + 1] <= given[2 * a + 1] for a in range(3))


BAD = [
    ({"mode": "all"}, 422, "'mode' must be one of"),
    ({"mode": "boxes"}, 422, "needs 'boxes'"),
    ({"mode": "boxes", "boxes": [[100, 120, 2, 9, 0, 6]]}, 422, "outside the image"),
    ({"mode": "boxes", "boxes": [[1, 2, 3]]}, 422, "boxes[0]"),
    ({"mode": "boxes", "boxes": [[3, 3, 2, 9, 0, 6]]}, 422, "flat in the slice plane"),
    ({"mode": "boxes", "boxes": "[[1,2,3,4,5,6]]"}, 422, "non-empty list"),
    ({"mode": "everything", "slice": 12}, 422, "'slice' 12 is outside the image"),
    ({"mode": "everything", "points_per_side": 0}, 422, "'points_per_side'"),
    ({"mode": "everything", "points_per_side": 1000}, 422, "'points_per_side'"),
    ({"mode": "everything", "pred_iou_thresh": "high"}, 422, "'pred_iou_thresh'"),
    ({"mode": "everything", "axis": 5}, 422, "'axis'"),
    ({"mode": "boxes", "boxes": [[2, 25, 3, 14, 2, 8]], "iou_threshold": 2}, 422, "'iou_threshold'"),
]


@pytest.mark.parametrize("params, status, message", BAD)
def test_bad_instance_requests_get_a_clear_4xx(server, params, status, message):
    response = requests.post(
        f"{server}/infer/{TASK}", params={"image": "oblique"}, files={"params": (None, json.dumps(params))}, timeout=60,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
