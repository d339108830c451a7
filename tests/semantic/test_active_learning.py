"""Uncertainty of the semantic decoder: the entropy measure, the sampled slices, the ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medicosam_app.semantic.active_learning import UncertaintyRanker, mean_entropy, sampled_slices, score_against_label
from medicosam_app.semantic.config import TrainingConfig
from medicosam_app.learning.labelled_images import find_labelled_images, unlabelled_images
from medicosam_app.services import build_model_provider, build_retrainer, build_semantic_segmenter, build_slice_embedder
from medicosam_app.settings import Settings

from conftest import SEMANTIC_TRAINING


def test_mean_entropy_is_one_for_uniform_and_zero_for_certain_predictions():
    uniform = np.full((2, 3, 4, 5), 1 / 3)
    certain = np.zeros((2, 3, 4, 5))
    certain[:, 1] = 1.0
    assert mean_entropy(uniform) == pytest.approx(1.0)
    assert mean_entropy(certain) == pytest.approx(0.0, abs=1e-6)
    half = np.zeros((1, 2, 1, 2))
    half[0, :, 0, 0] = 0.5
    half[0, 0, 0, 1] = 1.0
    assert mean_entropy(half) == pytest.approx(0.5 * math.log(2) / math.log(2), abs=1e-6)


def test_sampled_slices_are_evenly_spaced_inside_the_volume():
    assert sampled_slices(3, 5) == [0, 1, 2]
    assert sampled_slices(60, 5) == [10, 20, 30, 39, 49]


def test_uncertainty_ranks_unlabelled_images_and_dice_scores_labelled_ones(tiny256_checkpoint, tmp_path, mni_studies):
    settings = Settings.from_conf({"checkpoint": str(tiny256_checkpoint), "cache_dir": str(tmp_path / "cache")})
    models = build_model_provider(settings)
    embedder = build_slice_embedder(settings, models)
    retrainer = build_retrainer(settings, models, embedder)
    retrainer.run(find_labelled_images(mni_studies), TrainingConfig.from_mapping(dict(SEMANTIC_TRAINING, epochs=4)),
                  progress=False)
    segmenter = build_semantic_segmenter(settings, embedder)
    ranker = UncertaintyRanker(segmenter, slices_per_image=3)
    candidates = [str(p) for p in unlabelled_images(mni_studies)] + [str(mni_studies / "subject_0.nii.gz")]
    ranked = ranker.rank(candidates)
    assert {s.image for s in ranked} == set(candidates)
    assert all(0 <= s.entropy <= 1 for s in ranked) and ranked[0].entropy >= ranked[-1].entropy
    assert ranker.score(candidates[0]) == next(s for s in ranked if s.image == candidates[0])  # remembered
    study = find_labelled_images(mni_studies)[2]
    score = score_against_label(segmenter, str(study.image_path), str(study.label_path), max_slices=8)
    assert score["version"] == "v0001" and score["slices"] == 8 and 0 < score["mean"] <= 1
