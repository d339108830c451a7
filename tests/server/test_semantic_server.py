"""The active-learning loop through the real server and the Slicer module's client: save final labels →
retraining starts by itself → a new version with metrics → ``medicosam_semantic`` segments; next-sample
strategies; Dice scoring; the in-server schedule."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import SEMANTIC_TRAINING, write_mni_subjects
from medicosam_app.semantic.metrics import dice_per_class

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
SEMANTIC = "medicosam_semantic"


def _env(checkpoint, **extra):
    env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_TRAIN_EPOCHS": "10"}
    env.update({f"MEDICOSAM_TRAIN_{k.upper()}": str(v) for k, v in SEMANTIC_TRAINING.items()})
    env.update(extra)
    return env


def _studies_and_labels(folder, template):
    """Four MNI subjects without labels in the datastore; the labels a radiologist would submit aside."""
    write_mni_subjects(folder / "studies", template, count=3, unlabelled=1)
    shutil.move(folder / "studies" / "labels" / "final", folder / "accepted")
    shutil.rmtree(folder / "studies" / "labels")
    return folder / "studies", folder / "accepted"


def _wait_for_version(url, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = requests.get(f"{url}/info/", timeout=10).json()["models"][SEMANTIC]
        if model.get("model_version"):
            return model
        time.sleep(1)
    raise AssertionError("no semantic model version appeared")


def _submit(client, accepted, image_id):
    return client.save_label(
        image_id, str(accepted / f"{image_id}.nii.gz"), tag="final",
        params={"label_info": [{"name": "grey_matter", "idx": 1}, {"name": "white_matter", "idx": 2}]},
    )


@pytest.fixture(scope="module")
def loop(tiny256_checkpoint, mni_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("semantic")
    studies, accepted = _studies_and_labels(root, mni_template)
    env = _env(tiny256_checkpoint, MEDICOSAM_RETRAIN_AFTER_LABELS="3", MEDICOSAM_CACHE_DIR=str(root / "server_cache"),
               OMP_NUM_THREADS="1")
    with running_server(studies, root / "server.log", env=env) as url:
        assert wait_for_model(url)["available"]
        yield url, studies, accepted, root


def test_info_lists_the_semantic_model_trainer_strategies_and_scoring(loop):
    url = loop[0]
    info = requests.get(f"{url}/info/", timeout=10).json()
    model = info["models"][SEMANTIC]
    assert model["type"] == "segmentation" and model["labels"] == {"grey_matter": 1, "white_matter": 2}
    assert model["model_version"] is None
    assert SEMANTIC in info["trainers"]
    assert {"medicosam_uncertainty", "random", "first"} <= set(info["strategies"])
    assert "medicosam_dice" in info["scoring"]


def test_before_any_training_the_semantic_task_says_what_to_do(loop):
    url = loop[0]
    response = requests.post(f"{url}/infer/{SEMANTIC}", params={"image": "subject_0"}, timeout=60)
    assert response.status_code == 409
    assert "No semantic model has been trained yet" in response.json()["detail"]


def test_strategies_before_training(loop):
    url = loop[0]
    first = requests.post(f"{url}/activelearning/first", json={}, timeout=60).json()
    assert first["id"] == "subject_0"
    uncertain = requests.post(f"{url}/activelearning/medicosam_uncertainty", json={}, timeout=60).json()
    assert uncertain["id"].startswith("subject_") and "no semantic model" in uncertain["strategy_note"]


def test_saving_final_labels_trains_a_version_that_segments(loop, tmp_path):
    url, studies, accepted, root = loop
    client = slicer_client(url, tmp_path)
    assert "retraining" not in _submit(client, accepted, "subject_0")
    assert "retraining" not in _submit(client, accepted, "subject_1")
    third = _submit(client, accepted, "subject_2")
    assert third["retraining"].startswith("started: 3 new labels")

    model = _wait_for_version(url)
    assert model["model_version"] == "v0001" and model["validation_dice"] > 0.2
    stats = requests.get(f"{url}/info/", timeout=10).json()["train_stats"][SEMANTIC]
    assert stats["serving"] == "v0001" and stats["versions"][0]["promoted"]

    path, answer = client.infer(SEMANTIC, "subject_2", {"result_extension": ".nii.gz"})
    assert answer["label_names"] == {"grey_matter": 1, "white_matter": 2} and answer["model_version"] == "v0001"
    image = sitk.ReadImage(str(studies / "subject_2.nii.gz"))
    label = sitk.ReadImage(str(path))
    assert label.GetSize() == image.GetSize()
    assert np.allclose(label.GetSpacing(), image.GetSpacing()) and np.allclose(label.GetOrigin(), image.GetOrigin())
    assert np.allclose(label.GetDirection(), image.GetDirection())
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(accepted / "subject_2.nii.gz")))
    dice = dice_per_class(sitk.GetArrayFromImage(label), truth, ["grey_matter", "white_matter"])
    assert dice["mean"] > 0.3

    # After the promoted round, Dice scoring recorded each labelled image's score in the datastore.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = json.loads((studies / "datastore_v2.json").read_text())["objects"]
        if all("medicosam_dice" in record[i]["image"].get("info", {}) for i in ("subject_0", "subject_1", "subject_2")):
            break
        time.sleep(1)
    score = record["subject_2"]["image"]["info"]["medicosam_dice"]
    assert score["version"] == "v0001" and set(score["per_class"]) == {"grey_matter", "white_matter"}


def test_instances_from_the_semantic_model_keep_their_classes(loop, tmp_path):
    url, studies, _, _ = loop
    client = slicer_client(url, tmp_path)
    semantic_path, _ = client.infer(SEMANTIC, "subject_2", {"result_extension": ".nii.gz"})
    semantic = sitk.GetArrayFromImage(sitk.ReadImage(str(semantic_path))).transpose(2, 1, 0)
    params = {"mode": "semantic", "iou_threshold": 0, "min_predicted_iou": 0, "max_instances": 5,
              "result_extension": ".nii.gz"}
    path, answer = client.infer("medicosam_instances", "subject_2", params)
    assert answer["mode"] == "semantic" and answer["model_version"] == "v0001"
    image, label = sitk.ReadImage(str(studies / "subject_2.nii.gz")), sitk.ReadImage(str(path))
    assert label.GetSize() == image.GetSize() and np.allclose(label.GetDirection(), image.GetDirection())
    label = sitk.GetArrayFromImage(label).transpose(2, 1, 0)
    records = answer["instances"]
    assert records and len(records) <= 5 <= answer["proposed"] + 5
    assert sorted(np.unique(label[label > 0]).tolist()) == [r["id"] for r in records]
    for record in records:
        assert (record["class"], record["class_value"]) in {("grey_matter", 1), ("white_matter", 2)}
        assert record["name"].startswith(record["class"] + " ")
        i0, i1, j0, j1, k0, k1 = record["box"]
        # Drawn from a component of its class: that class is inside the instance's box in the semantic answer.
        assert (semantic[i0 : i1 + 1, j0 : j1 + 1, k0 : k1 + 1] == record["class_value"]).any()
    assert answer["label_names"] == {r["name"]: r["id"] for r in records}


def test_semantic_refined_by_medicosam_keeps_the_classes(loop, tmp_path):
    url, studies, _, _ = loop
    path, answer = slicer_client(url, tmp_path).infer(
        SEMANTIC, "subject_2", {"refine": True, "iou_threshold": 0, "min_predicted_iou": 0, "result_extension": ".nii.gz"}
    )
    assert answer["refined"] is True and answer["model_version"] == "v0001"
    assert answer["redrawn_slices"] + answer["kept_slices"] > 0
    assert answer["label_names"] == {"grey_matter": 1, "white_matter": 2}
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert set(np.unique(label).tolist()) <= {0, 1, 2} and label.any()


def test_uncertainty_strategy_returns_the_unlabelled_image(loop):
    url = loop[0]
    answer = requests.post(f"{url}/activelearning/medicosam_uncertainty", json={}, timeout=120).json()
    assert answer["id"] == "subject_3" and 0 <= answer["entropy"] <= 1 and answer["model_version"] == "v0001"


def test_train_request_with_two_processes_runs_ddp_and_keeps_the_gate(loop):
    url, studies, _, root = loop
    params = {"nproc": 2, "force": True, "epochs": 1, "warm_start": False}
    deadline = time.monotonic() + 120  # the first round (and its Dice scoring) may still be running
    while requests.get(f"{url}/train/", params={"check_if_running": True}, timeout=10).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(1)
    response = requests.post(f"{url}/train/{SEMANTIC}", json=params, timeout=30)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stats = requests.get(f"{url}/info/", timeout=10).json()["train_stats"][SEMANTIC]
        if len(stats["versions"]) == 2:
            break
        time.sleep(1)
    second = stats["versions"][1]
    assert second["version"] == "v0002" and second["parent"] == "v0001"
    metadata = json.loads((root / "server_cache" / "semantic" / "versions" / "v0002" / "metadata.json").read_text())
    assert metadata["world_size"] == 2 and metadata["config"]["epochs"] == 1
    # The gate's mechanism, whatever one epoch reaches on this CPU: the candidate and the serving version were
    # validated on the same slices, and the candidate is served exactly when its Dice is not lower.
    metrics = metadata["metrics"]
    assert metrics["serving_val_dice"] is not None and metadata["val_images"]
    beats = metrics["val_dice"] >= metrics["serving_val_dice"]
    assert second["promoted"] is beats and metadata["promoted"] is beats
    assert stats["serving"] == ("v0002" if beats else "v0001")
    assert ("≥" if beats else "<") in metadata["promotion"] and "of v0001" in metadata["promotion"]


def test_schedule_retrains_in_the_server(tiny256_checkpoint, mni_template, tmp_path):
    studies, accepted = _studies_and_labels(tmp_path, mni_template)
    env = _env(tiny256_checkpoint, MEDICOSAM_RETRAIN_AFTER_LABELS="0", MEDICOSAM_RETRAIN_SCHEDULE="every 2s",
               MEDICOSAM_TRAIN_EPOCHS="1")
    with running_server(studies, tmp_path / "server.log", env=env) as url:
        assert wait_for_model(url)["available"]
        time.sleep(5)  # the schedule has ticked with nothing to learn: no version
        assert requests.get(f"{url}/info/", timeout=10).json()["models"][SEMANTIC]["model_version"] is None
        answer = _submit(slicer_client(url, tmp_path / "client"), accepted, "subject_1")
        assert "retraining" not in answer  # no label-count trigger here
        assert _wait_for_version(url)["model_version"] == "v0001"
