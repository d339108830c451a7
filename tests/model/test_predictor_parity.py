"""The core's preprocessing, coordinate chain and decoding equal segment-anything's SamPredictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from conftest import asymmetric_array, write_volume
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from medicosam_app.model.predictor import PromptPredictor
from medicosam_app.model.sam_builder import load_sam


@pytest.fixture(scope="module")
def sam(tiny_checkpoint):
    return load_sam(tiny_checkpoint)[0]


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((180, 300, 3)) * 255).astype(np.uint8)  # not square: exercises padding


def _reference(sam, image):
    reference = SamPredictor(sam)
    reference.set_image(image)
    return reference


def test_embedding_equals_set_image(sam, image):
    assert torch.equal(PromptPredictor(sam).encode(image).features, _reference(sam, image).features)


def test_single_point_picks_the_best_of_three_like_sam(sam, image):
    points, labels = np.array([[120.0, 40.0]]), np.array([1])
    masks, ious, low_res = _reference(sam, image).predict(point_coords=points, point_labels=labels, multimask_output=True)
    best = int(np.argmax(ious))
    ours = PromptPredictor(sam).predict(PromptPredictor(sam).encode(image), points, labels)
    np.testing.assert_allclose(ours.low_res_logits[0].numpy(), low_res[best], atol=1e-5)
    assert np.array_equal(ours.mask, masks[best])
    assert ours.predicted_iou == pytest.approx(float(ious[best]), abs=1e-6)


def test_points_box_and_previous_logits_match(sam, image):
    predictor = PromptPredictor(sam)
    embedding = predictor.encode(image)
    reference = _reference(sam, image)
    points, labels, box = np.array([[120.0, 40.0], [200.0, 150.0]]), np.array([1, 0]), np.array([90.0, 20.0, 250.0, 170.0])
    _, _, first = reference.predict(point_coords=points, point_labels=labels, box=box, multimask_output=False)
    ours = predictor.predict(embedding, points, labels, box)
    np.testing.assert_allclose(ours.low_res_logits.numpy(), first, atol=1e-5)
    _, _, second = reference.predict(point_coords=points, point_labels=labels, mask_input=first, multimask_output=False)
    refined = predictor.predict(embedding, points, labels, mask_logits=ours.low_res_logits)
    np.testing.assert_allclose(refined.low_res_logits.numpy(), second, atol=1e-5)


def test_a_click_on_a_volume_reaches_sam_as_the_display_slice_and_pixel(tmp_path, tiny_checkpoint, sam):
    """Whole chain: oblique volume file → click [i, j, k] → logits equal SamPredictor on a hand-made slice."""
    array = asymmetric_array()
    path = write_volume(tmp_path / "v.nii.gz", array)
    i, j, k = 30, 7, 5
    # float32 embeddings, as segment_anything keeps them: this test is about the chain, not float16 storage
    segmenter = InteractiveSegmenter(ModelProvider(str(tiny_checkpoint), embedding_storage="fp32"))
    result = segmenter.segment(path, requested({"foreground": [[i, j, k]], "slice": k}), ClickContext("v"))

    # Independent of the code under test: with direction columns i→anterior, j→patient-left, the axial
    # display has rows = i reversed and columns = j; uint8 = volume min-max, then slice min-max.
    rows = array.shape[0]
    volume_u8 = np.round((array - array.min()) * (255.0 / (array.max() - array.min())))
    display = volume_u8[::-1, :, k]
    grey = np.round((display - display.min()) * (255.0 / (display.max() - display.min()))).astype(np.uint8)
    reference = _reference(sam, np.repeat(grey[:, :, None], 3, axis=2))
    masks, ious, low_res = reference.predict(
        point_coords=np.array([[j, rows - 1 - i]], dtype=float), point_labels=np.array([1]), multimask_output=True
    )
    best = int(np.argmax(ious))
    assert result.predicted_iou == pytest.approx(float(ious[best]), abs=1e-5)
    expected = np.zeros(array.shape, dtype=np.uint8)
    expected[:, :, k] = masks[best][::-1, :]
    assert np.array_equal(result.label, expected)
