"""Training the semantic decoder on MNI grey/white matter, the promotion gate, and inference with the
served version (tiny random SAM encoder with a 256² input, narrow decoder)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from medicosam_app.geometry.coordinates import SliceView
from medicosam_app.semantic.config import TrainingConfig
from medicosam_app.semantic.metrics import dice_per_class
from medicosam_app.semantic.segmenter import NoSemanticModelError, SemanticSegmenter
from medicosam_app.learning.labelled_images import find_labelled_images
from medicosam_app.services import build_model_provider, build_retrainer, build_semantic_segmenter, build_slice_embedder
from medicosam_app.settings import Settings
from medicosam_app.geometry.volume import read_volume

from conftest import SEMANTIC_TRAINING


@pytest.fixture()
def semantic(tiny256_checkpoint, tmp_path):
    settings = Settings.from_conf({"checkpoint": str(tiny256_checkpoint), "cache_dir": str(tmp_path / "cache")})
    models = build_model_provider(settings)
    embedder = build_slice_embedder(settings, models, memory_mb=0)
    retrainer = build_retrainer(settings, models, embedder)
    segmenter = build_semantic_segmenter(settings, build_slice_embedder(settings, models))
    config = TrainingConfig.from_mapping(dict(SEMANTIC_TRAINING, epochs=6))
    return retrainer, segmenter, config


def test_training_beats_the_untrained_decoder_and_the_loss_falls(semantic, mni_studies):
    retrainer, segmenter, config = semantic
    summary = retrainer.run(find_labelled_images(mni_studies), config, progress=False)
    assert summary.status == "trained" and summary.promoted and summary.version == "v0001"
    metrics = summary.metrics
    losses = [epoch["train_loss"] for epoch in metrics["history"]]
    assert losses[-1] < 0.8 * losses[0]
    assert metrics["val_dice"] > metrics["untrained_val_dice"] + 0.1
    assert set(metrics["val_dice_per_class"]) == {"grey_matter", "white_matter"}
    meta = retrainer.store.metadata("v0001")
    assert meta["val_images"] and meta["train_images"] and not set(meta["val_images"]) & set(meta["train_images"])
    assert meta["encoder_checkpoint"] == retrainer.models.checkpoint_hash
    assert meta["parent"] is None and meta["init"] == "scratch"
    assert {d["image_id"] for d in meta["data"]} == {"subject_0", "subject_1", "subject_2"}


def test_semantic_inference_returns_labels_in_the_image_geometry(semantic, mni_studies):
    retrainer, segmenter, config = semantic
    with pytest.raises(NoSemanticModelError, match="No semantic model has been trained yet"):
        segmenter.segment(str(mni_studies / "subject_0.nii.gz"))
    retrainer.run(find_labelled_images(mni_studies), dataclasses.replace(config, epochs=8), progress=False)
    result = segmenter.segment(str(mni_studies / "subject_2.nii.gz"))
    truth = read_volume(mni_studies / "labels" / "final" / "subject_2.nii.gz").array
    assert result.label.shape == truth.shape and result.version == "v0001"
    assert set(np.unique(result.label)) <= {0, 1, 2}
    assert result.classes.label_names() == {"grey_matter": 1, "white_matter": 2}
    # A transposed or flipped label would fit the truth worse than its own mirror image does.
    names = ["grey_matter", "white_matter"]
    right = dice_per_class(result.label, truth, names)["mean"]
    flipped = dice_per_class(result.label[:, ::-1, :], truth, names)["mean"]  # anterior ↔ posterior
    assert right > 0.3 and right > flipped + 0.1

    # The light path (semantic_downscale 2): the same model decoded at half size, in the same geometry,
    # close to the full path and as good against the truth.
    light = SemanticSegmenter(segmenter.store, segmenter.embedder, batch_size=4, downscale=2)
    coarse = light.segment(str(mni_studies / "subject_2.nii.gz"))
    assert coarse.label.shape == truth.shape and coarse.version == "v0001"
    assert dice_per_class(coarse.label, result.label, names)["mean"] > 0.8
    assert dice_per_class(coarse.label, truth, names)["mean"] > right - 0.1


def test_a_worse_run_is_stored_but_not_promoted_and_rollback_restores(semantic, mni_studies):
    retrainer, segmenter, config = semantic
    studies = find_labelled_images(mni_studies)
    first = retrainer.run(studies, config, progress=False)
    assert first.promoted
    served_before = segmenter.served().decoder
    worse = retrainer.run(studies, dataclasses.replace(config, epochs=0, warm_start=False), force=True, progress=False)
    assert worse.status == "trained" and not worse.promoted and worse.version == "v0002"
    assert worse.metrics["serving_val_dice"] == pytest.approx(first.metrics["val_dice"], abs=1e-6)
    assert retrainer.store.serving() == "v0001" and segmenter.served().decoder is served_before
    retrainer.store.promote("v0002", "admin test")
    assert segmenter.served().version == "v0002"  # picked up without a new segmenter (no restart)
    assert retrainer.store.rollback() == "v0001"
    assert segmenter.served().version == "v0001"


def test_retraining_is_idempotent_and_learns_corrected_labels(semantic, mni_studies):
    retrainer, _, config = semantic
    config = dataclasses.replace(config, epochs=1)
    assert retrainer.run(find_labelled_images(mni_studies), config, progress=False).status == "trained"
    again = retrainer.run(find_labelled_images(mni_studies), config, progress=False)
    assert again.status == "nothing-to-do" and "0 new labels" in again.line()
    # A corrected label (saved again with other content) counts as new; the next round warm-starts.
    label = mni_studies / "labels" / "final" / "subject_1.nii.gz"
    shutil.copy(mni_studies / "labels" / "final" / "subject_0.nii.gz", label)
    assert len(retrainer.new_labels(find_labelled_images(mni_studies))) == 1
    assert retrainer.run(find_labelled_images(mni_studies), config, min_new_labels=2, progress=False).status == "nothing-to-do"
    third = retrainer.run(find_labelled_images(mni_studies), config, progress=False)
    assert third.status == "trained" and retrainer.store.metadata(third.version)["init"] == "v0001"


def test_training_features_are_cached_so_a_later_round_only_encodes_new_images(semantic, mni_studies):
    retrainer, _, config = semantic
    config = dataclasses.replace(config, epochs=1)
    studies = find_labelled_images(mni_studies)
    retrainer.run(studies[:2], config, progress=False)
    disk = retrainer.embedder.embeddings.disk
    files_before = set(disk._files())
    retrainer.run(studies, config, progress=False)
    new_files = set(disk._files()) - files_before
    volume = read_volume(studies[2].image_path)
    view = SliceView.create(volume.shape, volume.direction, 2)
    new_keys = {disk.path_for(retrainer.embedder.key(volume, view, i)) for i in range(view.num_slices)}
    assert new_files and new_files <= new_keys  # only subject_2's slices were encoded


def test_a_candidate_without_validation_slices_is_never_promoted_even_forced(semantic, mni_studies):
    """val_fraction 0 leaves nothing to validate on: the version is stored, never served (not even the first)."""
    retrainer, segmenter, config = semantic
    studies = find_labelled_images(mni_studies)
    unvalidated = retrainer.run(studies, dataclasses.replace(config, val_fraction=0.0, epochs=1), force=True, progress=False)
    assert unvalidated.status == "trained" and not unvalidated.promoted
    assert "no validation slices" in unvalidated.reason
    assert retrainer.store.serving() is None and retrainer.store.list()[0]["version"] == "v0001"
