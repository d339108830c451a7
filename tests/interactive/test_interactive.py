"""Control logic of one click, with a recording double in place of the network."""

from __future__ import annotations

import numpy as np
import torch

from predictor_doubles import RecordingPredictorDouble
from conftest import ModelsDouble, asymmetric_array, write_volume
from medicosam_app.api import ClickRequest
from conftest import requested
from medicosam_app.embeddings.memory_cache import EmbeddingCache
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter


def _segmenter(double):
    return InteractiveSegmenter(ModelsDouble(double), embeddings=EmbeddingCache())


def test_click_marks_the_clicked_voxel_on_its_slice_only(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    double = RecordingPredictorDouble()
    result = _segmenter(double).segment(path, requested({"foreground": [[30, 7, 5]], "slice": 5}), ClickContext("v"))
    assert result.label.shape == (40, 30, 12)
    assert result.label[30, 7, 5] == 1
    nonzero = np.argwhere(result.label)
    assert set(nonzero[:, 2]) == {5}
    assert set(nonzero[:, 0]) == {29, 30, 31} and set(nonzero[:, 1]) == {6, 7, 8}
    # the oblique volume shows i reversed as rows and j as columns: (x, y) = (j, 39 - i)
    assert double.calls[0]["points"].tolist() == [[7, 9]]


def test_second_click_reuses_the_embedding_and_refines_with_previous_logits(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    double = RecordingPredictorDouble()
    segmenter = _segmenter(double)
    first = segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a"))
    second = segmenter.segment(path, requested({"foreground": [[30, 7, 5]], "background": [[20, 20, 5]]}), ClickContext("v", client_id="a"))
    assert (first.embedding_cached, second.embedding_cached) == (False, True)
    assert len(double.encoded) == 1
    assert double.calls[0]["mask_logits"] is None
    assert torch.equal(double.calls[1]["mask_logits"], torch.full((1, 256, 256), 1.0))
    assert double.calls[1]["labels"].tolist() == [1, 0]


def test_refinement_is_kept_per_client_and_cleared_by_reset_state(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    double = RecordingPredictorDouble()
    segmenter = _segmenter(double)
    segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a"))
    segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="b"))
    assert double.calls[1]["mask_logits"] is None  # another user starts fresh
    segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a", reset_state=True))
    assert double.calls[2]["mask_logits"] is None
    segmenter.segment(path, requested({"foreground": [[30, 7, 6]]}), ClickContext("v", client_id="a"))
    assert double.calls[3]["mask_logits"] is None  # another slice has its own state
    assert len(double.encoded) == 2


def test_requests_without_client_id_never_refine_each_other(tmp_path):
    """OHIF and scripts may send no client_id: two such annotators on one slice cannot be told apart, so
    each anonymous click is answered from its own prompts (no previous logits), and leaves nothing behind
    that a named client would pick up."""
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    double = RecordingPredictorDouble()
    segmenter = _segmenter(double)
    request = {"foreground": [[30, 7, 5]]}
    segmenter.segment(path, requested(request), ClickRequest.read({"image": "v"}).context("label"))
    segmenter.segment(path, requested(request), ClickRequest.read({"image": "v"}).context("label"))
    segmenter.segment(path, requested(request), ClickContext("v", client_id="a"))
    assert [call["mask_logits"] for call in double.calls] == [None, None, None]
    segmenter.segment(path, requested(request), ClickContext("v", client_id="a"))
    assert double.calls[3]["mask_logits"] is not None  # a named client still refines
    assert len(segmenter.refinement._logits) == 1


def test_box_only_request_uses_the_roi_middle_slice(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    double = RecordingPredictorDouble()
    result = _segmenter(double).segment(path, requested({"roi": [10, 20, 5, 15, 2, 8]}), ClickContext("v"))
    assert result.slice_index == 5
    # rows are i reversed (39 - i), columns are j: box x 5..15, y 19..29
    assert double.calls[0]["box"].tolist() == [5, 19, 15, 29]


def test_unreadable_images_are_refused_clearly_and_colour_is_kept(tmp_path):
    import SimpleITK as sitk
    import pytest

    from medicosam_app.errors import ImageReadError
    from medicosam_app.geometry.volume import read_volume

    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="Cannot read image junk.nii.gz"):
        read_volume(tmp_path / "junk.nii.gz")
    rgb = sitk.Image([8, 6], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.png"))
    colour = read_volume(tmp_path / "rgb.png")
    assert colour.array.shape == (8, 6, 1, 3) and colour.layout == "plane" and colour.shape == (8, 6, 1)
    sitk.WriteImage(sitk.Image([8, 6, 2], sitk.sitkVectorFloat32, 5), str(tmp_path / "five.nrrd"))
    with pytest.raises(ImageReadError, match="5 values per voxel"):
        read_volume(tmp_path / "five.nrrd")


def test_a_new_checkpoint_or_preprocessing_does_not_reuse_embeddings(tmp_path):
    from medicosam_app.embeddings.intensity import IntensityPolicy

    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    shared = EmbeddingCache()
    click = {"foreground": [[30, 7, 5]]}

    def run(encoder_key, intensity=IntensityPolicy()):
        double = RecordingPredictorDouble()
        models = ModelsDouble(double)
        models.encoder_key = encoder_key
        segmenter = InteractiveSegmenter(models, intensity=intensity, embeddings=shared)
        return segmenter.segment(path, requested(click), ClickContext("v")).embedding_source

    assert run("checkpoint-a") == "encoded"
    assert run("checkpoint-a") == "memory"
    assert run("checkpoint-b") == "encoded"
    assert run("checkpoint-a", IntensityPolicy(mode="window")) == "encoded"


def test_remembered_logits_hold_their_own_mask_not_all_three(tiny_checkpoint):
    """A lone click asks SAM for three masks; what the refinement memory keeps must be the chosen one's 256 kB,
    not a view that holds the other two alive (the soak benchmark's memory grew by 768 kB per clicked slice)."""
    from medicosam_app.interactive.refinement import RefinementKey, RefinementMemory
    from medicosam_app.model.predictor import PromptPredictor
    from medicosam_app.model.sam_builder import load_sam

    predictor = PromptPredictor(load_sam(tiny_checkpoint)[0])
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    prediction = predictor.predict(predictor.encode(image), np.array([[20.0, 10.0]]), np.array([1]))
    logits = prediction.low_res_logits
    assert logits.untyped_storage().nbytes() == logits.numel() * logits.element_size()
    memory = RefinementMemory(max_entries=2)
    for n in range(3):
        memory.put(RefinementKey("slicer", "knee", "final", 2, n), logits)
    assert memory.get(RefinementKey("slicer", "knee", "final", 2, 0)) is None  # the least recent went
    assert memory.get(RefinementKey("slicer", "knee", "final", 2, 2)) is logits
