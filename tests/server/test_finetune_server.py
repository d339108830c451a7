"""Interactive finetuning through the real server: ``POST /train/medicosam_interactive`` trains a version in
MONAI Label's training process, the gate decides, and the running server's clicks pick up the served
version, an administrator's promotion and a rollback without a restart; answers and the audit trail name it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
import SimpleITK as sitk

from conftest import write_phantom_subjects

from .harness import REPO, running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
INTERACTIVE = "medicosam_interactive"
LABELS = "liver,spine,lesion"


@pytest.fixture(scope="module")
def server(tiny256_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    studies = write_phantom_subjects(root / "studies", count=4)
    env = {
        "MEDICOSAM_CHECKPOINT": str(tiny256_checkpoint), "MEDICOSAM_LABELS": LABELS, "MEDICOSAM_PREFETCH_RADIUS": "0",
        "MEDICOSAM_CACHE_DIR": str(root / "cache"), "MEDICOSAM_RETRAIN_AFTER_LABELS": "0",
        "MEDICOSAM_FINETUNE_AFTER_LABELS": "1",
        "MEDICOSAM_FINETUNE_EPOCHS": "3", "MEDICOSAM_FINETUNE_LEARNING_RATE": "0.005",
        "MEDICOSAM_FINETUNE_SUB_ITERATIONS": "3", "MEDICOSAM_FINETUNE_MAX_SLICES_PER_IMAGE": "4",
        "MEDICOSAM_FINETUNE_GATE_SLICES_PER_IMAGE": "3", "MEDICOSAM_FINETUNE_VAL_FRACTION": "0.3",
    }
    with running_server(studies, root / "server.log", env=env) as url:
        assert wait_for_model(url)["available"]
        yield url, root, env


def _click(url, image="phantom_0", client="annotator-1", **extra):
    params = {"foreground": [[40, 40, 18]], "client_id": client, "reset_state": True, **extra}
    response = requests.post(
        f"{url}/infer/{INTERACTIVE}", params={"image": image, "output": "json"},
        files={"params": (None, json.dumps(params))}, timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _no_training_running(url, deadline):
    while requests.get(f"{url}/train/", params={"check_if_running": True}, timeout=10).status_code == 200:
        assert time.monotonic() < deadline, "an earlier training round never finished"
        time.sleep(1)


def _train(url, **options):
    deadline = time.monotonic() + 300
    _no_training_running(url, deadline)
    before = len(_stats(url)["versions"])
    response = requests.post(f"{url}/train/{INTERACTIVE}", json=options, timeout=30)
    assert response.status_code == 200, response.text
    while time.monotonic() < deadline:
        stats = _stats(url)
        if len(stats["versions"]) > before:
            return stats
        time.sleep(1)
    raise AssertionError("no interactive version appeared")


def _stats(url):
    return requests.get(f"{url}/info/", timeout=10).json()["train_stats"][INTERACTIVE]


def _models(root, *args):
    done = subprocess.run(
        [sys.executable, "-m", "medicosam_app", "models", *args, "--kind", "interactive", "--cache-dir", str(root / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_info_lists_the_trainer_and_clicks_use_the_checkpoints_decoder_before_any_round(server):
    url = server[0]
    info = requests.get(f"{url}/info/", timeout=10).json()
    assert INTERACTIVE in info["trainers"] and info["train_stats"][INTERACTIVE]["serving"] is None
    assert info["models"][INTERACTIVE]["model_status"]["interactive_decoder"]["serving"] is None
    assert _click(url)["interactive_version"] is None


def test_a_train_request_finetunes_gates_and_the_running_server_serves_it(server):
    url, root, _ = server
    stats = _train(url, force=True)
    first = stats["versions"][0]
    assert first["version"] == "v0001" and first["promoted"], first
    assert first["gate_candidate"]["dice_final"] > first["gate_serving"]["dice_final"]
    meta = json.loads((root / "cache" / "interactive" / "versions" / "v0001" / "metadata.json").read_text())
    assert meta["metrics"]["train_objects"] > 0 and meta["config"]["epochs"] == 3 and meta["parent"] is None
    assert sorted(meta["train_images"] + meta["val_images"]) == [f"phantom_{n}" for n in range(4)]
    answer = _click(url)
    assert answer["interactive_version"] == "v0001"
    records = [json.loads(line) for f in sorted((root / "cache" / "audit").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert any(r.get("event") == "infer" and (r.get("model") or {}).get("interactive_version") == "v0001" for r in records)
    assert any(r.get("event") == "train" and (r.get("model") or {}).get("interactive_version") == "v0001" for r in records)


def test_a_worse_version_is_stored_not_served_and_promotion_and_rollback_reach_the_running_server(server):
    url, root, _ = server
    # From the checkpoint's decoder with a learning rate far too high: whatever epoch it keeps, it is worse
    # on the held-out images than v0001, and the gate keeps it aside.
    stats = _train(url, force=True, learning_rate=1.0, epochs=2, warm_start=False)
    second = stats["versions"][1]
    assert second["version"] == "v0002" and not second["promoted"] and stats["serving"] == "v0001"
    assert "lower" in second["promotion"] or "higher" in second["promotion"], second["promotion"]
    assert _click(url)["interactive_version"] == "v0001"
    assert "v0002" in _models(root, "list")
    _models(root, "promote", "v0002")
    assert _click(url)["interactive_version"] == "v0002"  # no restart
    _models(root, "rollback")
    assert _click(url)["interactive_version"] == "v0001"


def test_a_corrected_label_starts_a_round_when_finetune_after_labels_is_reached(server, tmp_path):
    url, root, _ = server
    label = sitk.ReadImage(str(root / "studies" / "labels" / "final" / "phantom_1.nii.gz"))
    array = sitk.GetArrayFromImage(label)
    array[18, 40:44, 30:34] = 2  # the radiologist adds a few voxels: a new label for every version so far
    corrected = sitk.GetImageFromArray(array)
    corrected.CopyInformation(label)
    sitk.WriteImage(corrected, str(tmp_path / "corrected.nii.gz"))
    _no_training_running(url, time.monotonic() + 300)  # MONAI Label runs one round at a time
    before = len(_stats(url)["versions"])
    answer = slicer_client(url, tmp_path / "client").save_label(
        "phantom_1", str(tmp_path / "corrected.nii.gz"), tag="final",
        params={"label_info": [{"name": "liver", "idx": 1}, {"name": "spine", "idx": 2}, {"name": "lesion", "idx": 3}]},
    )
    assert answer.get("finetuning") == "started: 1 new labels", answer
    deadline = time.monotonic() + 300
    while len(_stats(url)["versions"]) == before:
        assert time.monotonic() < deadline, "the triggered round stored no version"
        time.sleep(1)
    newest = _stats(url)["versions"][-1]
    meta = json.loads((root / "cache" / "interactive" / "versions" / newest["version"] / "metadata.json").read_text())
    assert any(d["image_id"] == "phantom_1" for d in meta["data"]) and meta["parent"] == "v0001"


def test_a_version_with_a_finetuned_encoder_is_served_with_its_own_embeddings_and_rolled_back(server):
    """``encoder: lora`` (a GPU's job for ViT-B; seconds with the tiny model): the round stores LoRA factors;
    served, the running server embeds with the changed encoder under a key of its own, and a rollback
    returns to the checkpoint's encoder and its embeddings. The clicks are sagittal (axis 0): neither
    training nor the gate (axis 2) embeds those slices, so where each embedding came from is the click's."""
    url, root, _ = server
    sagittal = {"client": "annotator-2", "axis": 0}
    _no_training_running(url, time.monotonic() + 300)
    before = _stats(url)["serving"]  # a decoder-only version
    _click(url, **sagittal)  # the checkpoint's encoder embeds this slice
    assert _click(url, **sagittal)["latencies"]["embedding_source"] == "memory"
    # From the checkpoint (warm_start false), so the kept epoch surely differs from the start and the factors
    # are not zero: a round whose best epoch is its start stores no encoder change.
    stats = _train(url, force=True, encoder="lora", lora_rank=2, encoder_learning_rate=0.005, epochs=3, warm_start=False)
    newest = stats["versions"][-1]
    meta = json.loads((root / "cache" / "interactive" / "versions" / newest["version"] / "metadata.json").read_text())
    assert meta["encoder"] == "lora" and meta["encoder_tag"].startswith("lora-"), meta
    _no_training_running(url, time.monotonic() + 300)  # the round has finished, its gate promoted or not
    if _stats(url)["serving"] != newest["version"]:
        _models(root, "promote", newest["version"])
    answer = _click(url, **sagittal)
    assert answer["interactive_version"] == newest["version"]
    assert answer["latencies"]["embedding_source"] == "encoded"  # the checkpoint's embedding is not reused
    decoder = requests.get(f"{url}/info/", timeout=10).json()["models"][INTERACTIVE]["model_status"]["interactive_decoder"]
    assert decoder["serving"] == newest["version"] and decoder["encoder"] == meta["encoder_tag"]
    assert _click(url, **sagittal)["latencies"]["embedding_source"] == "memory"  # the new encoder's, cached
    _models(root, "rollback")
    answer = _click(url, **sagittal)
    assert answer["interactive_version"] == before and answer["latencies"]["embedding_source"] == "memory"
    decoder = requests.get(f"{url}/info/", timeout=10).json()["models"][INTERACTIVE]["model_status"]["interactive_decoder"]
    assert decoder["serving"] == before and decoder["encoder"] == "checkpoint"  # earlier versions: decoder only
