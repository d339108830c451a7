"""A 3D request end to end in the core, with a double in place of SAM: prompts → slices → label geometry."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from predictor_doubles import SquarePredictorDouble
from conftest import ModelsDouble, asymmetric_array, write_volume
from conftest import requested
from medicosam_app.errors import InvalidRequestError
from medicosam_app.interactive.slice_segmenter import ClickContext
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter


@pytest.fixture()
def segmenter():
    models = ModelsDouble(SquarePredictorDouble())
    return VolumeSegmenter(models, SliceEmbedder(models))


def test_a_click_fills_the_clicked_column_through_every_slice(tmp_path, segmenter):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())  # 40 x 30 x 12, oblique
    outcome = segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v"))
    label = outcome.label
    assert label.shape == (40, 30, 12)
    assert all(label[30, 7, k] == 1 for k in range(12))
    assert outcome.result.slice_range == (0, 11) and outcome.result.prompted_slices == [5]
    # The square is 7x7 around (i, j) = (30, 7) in every slice (clipped at j = 0 only).
    assert set(map(tuple, np.argwhere(label[:, :, 0]))) == {(i, j) for i in range(27, 34) for j in range(4, 11)}


def test_a_3d_roi_bounds_the_propagation_and_prompts_its_middle_slice(tmp_path, segmenter):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    # Slicer's corner order may be reversed on any axis.
    outcome = segmenter.segment(path, requested({"roi": [25, 15, 4, 14, 8, 3]}), ClickContext("v"))
    assert outcome.result.prompted_slices == [5]
    assert np.flatnonzero(outcome.label.any(axis=(0, 1))).tolist() == [3, 4, 5, 6, 7, 8]


def test_propagation_along_another_axis(tmp_path, segmenter):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    outcome = segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v"), axis=0)
    assert outcome.result.prompted_slices == [30] and outcome.result.slice_range == (0, 39)
    assert all(outcome.label[i, 7, 5] == 1 for i in range(40))
    assert set(map(tuple, np.argwhere(outcome.label[0]))) == {(j, k) for j in range(4, 11) for k in range(2, 9)}


def test_bad_3d_prompts_are_refused(tmp_path, segmenter):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    with pytest.raises(InvalidRequestError, match="No prompt"):
        segmenter.segment(path, requested({"foreground": [], "background": []}), ClickContext("v"))
    with pytest.raises(InvalidRequestError, match="outside the image"):
        segmenter.segment(path, requested({"roi": [100, 120, 2, 9, 0, 6]}), ClickContext("v"))
    with pytest.raises(InvalidRequestError, match="ROI covers slices"):
        segmenter.segment(path, requested({"foreground": [[30, 7, 10]], "roi": [25, 35, 4, 14, 2, 6]}), ClickContext("v"))


def test_a_repeated_request_reuses_the_previous_propagation(tmp_path, segmenter):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    predictor = segmenter.models.predictor()
    segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a"))
    first = predictor.predicted
    segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a"))
    assert predictor.predicted == first, "same prompts, same client: nothing recomputed"
    segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a", reset_state=True))
    assert predictor.predicted == 2 * first


def test_propagation_memory_is_bounded_in_bytes_not_entries():
    import torch

    from medicosam_app.interactive.propagation import PropagationState, SegmentResult, SliceMask
    from medicosam_app.interactive.volume_segmenter import PropagationMemory

    def state(slices: int) -> PropagationState:
        masks = {i: SliceMask(np.zeros((64, 64), bool), torch.zeros(1, 256, 256), 0.9) for i in range(slices)}
        return PropagationState(segments={("seg",): SegmentResult(masks=masks)})

    one_slice = state(1).nbytes
    memory = PropagationMemory(max_bytes=30 * one_slice)
    memory.put(("a", "img", "label"), state(20))
    memory.put(("b", "img", "label"), state(20))  # 40 slices > 30: the older, longer state goes
    assert memory.get(("a", "img", "label")) is None and memory.get(("b", "img", "label")) is not None
    assert memory.nbytes <= 30 * one_slice
    for client in "cdefgh":  # many short states fit where one long one did
        memory.put((client, "img", "label"), state(2))
    assert memory.nbytes <= 30 * one_slice
    memory.reset("c", "img", "label")
    assert memory.get(("c", "img", "label")) is None and memory.get(("d", "img", "label")) is not None


def test_keyed_locks_serialise_one_key_and_forget_it_afterwards():
    import threading
    import time

    from medicosam_app.keyed_locks import KeyedLocks

    locks, inside, overlaps = KeyedLocks(), [], []

    def work(key):
        with locks.hold(key):
            inside.append(key)
            if inside.count(key) > 1:
                overlaps.append(key)
            time.sleep(0.01)
            inside.remove(key)

    threads = [threading.Thread(target=work, args=(f"series{n % 3}",)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlaps and len(locks) == 0, "a key's lock lives only while it is used"


def test_queued_prefetch_does_not_keep_a_dropped_volume_alive(tmp_path):
    import gc
    import weakref

    from medicosam_app.geometry.coordinates import SliceView
    from medicosam_app.embeddings.prefetch import Prefetcher
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.geometry.volume import read_volume

    prefetcher = Prefetcher(lower_priority=False, quiet_seconds=3600)  # the plan stays queued
    try:
        predictor_double = types.SimpleNamespace(device=torch.device("cpu"))  # plans ask only for its device
        embedder = SliceEmbedder(ModelsDouble(predictor_double), prefetcher=prefetcher, prefetch_radius=4)
        volume = read_volume(write_volume(tmp_path / "v.nii.gz", asymmetric_array()))
        view = SliceView.create(volume.shape, volume.direction, 2)
        with prefetcher.hold():
            embedder.prefetch_around("client", volume, view, 5)
        assert prefetcher.stats["queued"] > 0
        dropped = weakref.ref(volume)
        del volume
        gc.collect()
        assert dropped() is None, "the queued plan pinned the volume outside the volume cache's budget"
    finally:
        prefetcher.stop()


def test_background_points_on_another_slice_correct_the_propagation_there(tmp_path):
    """Slicer sends every point: a foreground click on slice 5 and a background one on slice 9 (a leak seen
    after the first propagation). Slice 9 is not prompted on its own; the walk reaching it carries the box
    from slice 8 plus that background point, at the pixel the voxel maps to (oblique, asymmetric volume)."""
    from medicosam_app.geometry.coordinates import SliceView
    from medicosam_app.geometry.volume import read_volume

    class RecordingSquareDouble(SquarePredictorDouble):
        """SquarePredictorDouble that records each call's prompt and squares the box when points are only background."""

        def __init__(self):
            super().__init__()
            self.calls = []

        def predict(self, embedding, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None, multimask=None):
            self.calls.append((np.array(points_xy).tolist(), np.array(point_labels).tolist(), box_xyxy))
            if box_xyxy is not None and not np.any(point_labels):
                points_xy = np.zeros((0, 2))
            return super().predict(embedding, points_xy, point_labels, box_xyxy, mask_logits, multimask)

    double = RecordingSquareDouble()
    models = ModelsDouble(double)
    segmenter = VolumeSegmenter(models, SliceEmbedder(models))
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())  # 40 x 30 x 12, oblique
    params = {"foreground": [[30, 7, 5]], "background": [[28, 9, 9]]}
    outcome = segmenter.segment(path, requested(params), ClickContext("v"))
    assert outcome.result.prompted_slices == [5] and outcome.result.corrected_slices == [9]

    volume = read_volume(path)
    expected_xy = SliceView.create(volume.shape, volume.direction, 2).voxel_to_xy([28, 9, 9])
    at_slice_9 = [call for call in double.calls if call[1] == [0]]
    assert len(at_slice_9) == 1
    points, labels, box = at_slice_9[0]
    assert box is not None and points == [list(map(float, expected_xy))]

    with pytest.raises(InvalidRequestError, match="Only background points"):
        segmenter.segment(path, requested({"foreground": [], "background": [[28, 9, 9]]}), ClickContext("v"))


def test_the_slice_cap_narrows_the_walk_around_the_prompts_and_names_the_limit():
    from medicosam_app.interactive.volume_segmenter import capped_bounds
    from medicosam_app.settings import Settings

    assert capped_bounds((0, 1999), [1000], 0) == (0, 1999)  # no cap
    assert capped_bounds((0, 1999), [1000], 100) == (951, 1050)  # centred on the prompt (49 below, 50 above)
    assert capped_bounds((0, 1999), [10], 100) == (0, 99)  # against the start
    assert capped_bounds((0, 1999), [1995], 100) == (1900, 1999)  # against the end
    assert capped_bounds((0, 1999), [500, 540], 100) == (471, 570)  # both prompts inside
    with pytest.raises(InvalidRequestError, match="at most 100 slices") as refused:
        capped_bounds((0, 1999), [100, 400], 100)
    assert refused.value.status == 413
    assert Settings.from_conf({"max_propagation_slices": "300"}).max_propagation_slices == 300
    with pytest.raises(ValueError, match="whole number"):
        Settings.from_conf({"max_propagation_slices": "-1"})
