"""The prefetch worker: order, per-client plans, holds, failures; and that it never blocks a click."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import ModelsDouble, asymmetric_array, write_volume
from conftest import requested
from medicosam_app.embeddings.memory_cache import EmbeddingCache
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.predictor import ImageEmbedding, MaskPrediction
from medicosam_app.embeddings.prefetch import Prefetcher, PrefetchPlan, outward_order


def test_outward_order_alternates_and_stays_inside():
    assert outward_order(5, 12, 3) == [6, 4, 7, 3, 8, 2]
    assert outward_order(0, 4, 10) == [1, 2, 3]
    assert outward_order(3, 4, 2) == [2, 1]
    assert outward_order(2, 5, 0) == []


class GatedEncodeDouble:
    """Test double for the encode callback: records batches; can be made to wait on a gate."""

    def __init__(self, gated: bool = False):
        self.batches, self.done = [], set()
        self.gate, self.started = threading.Event(), threading.Event()
        if not gated:
            self.gate.set()
        self.lock = threading.Lock()

    def __call__(self, indices):
        self.started.set()
        self.gate.wait(10)
        with self.lock:
            self.batches.append(list(indices))
            self.done.update(indices)


def _plan(double, target, slices):
    return PrefetchPlan(target=target, slices=slices, encode=double, is_ready=lambda i: i in double.done)


@pytest.fixture()
def prefetcher():
    worker = Prefetcher(batch_size=2, lower_priority=False)
    yield worker
    worker.stop()


def test_slices_are_encoded_in_plan_order_in_batches_skipping_ready_ones(prefetcher):
    double = GatedEncodeDouble()
    double.done.add(4)
    prefetcher.focus("a", _plan(double, "img", outward_order(5, 12, 2)))
    assert prefetcher.wait_idle(10)
    assert double.batches == [[6, 7], [3]]


def test_a_new_plan_replaces_the_clients_stale_work(prefetcher):
    double = GatedEncodeDouble(gated=True)
    prefetcher.focus("a", _plan(double, "first image", [1, 2, 3, 4, 5, 6]))
    assert double.started.wait(10)  # the batch [1, 2] is in flight
    prefetcher.focus("a", _plan(double, "second image", [10, 11]))
    double.gate.set()
    assert prefetcher.wait_idle(10)
    assert double.batches == [[1, 2], [10, 11]], "slices 3-6 of the first image were stale"


def test_clients_take_turns(prefetcher):
    double = GatedEncodeDouble(gated=True)
    prefetcher.focus("a", _plan(double, "a", [1, 2, 3, 4]))
    assert double.started.wait(10)
    prefetcher.focus("b", _plan(double, "b", [101, 102]))
    double.gate.set()
    assert prefetcher.wait_idle(10)
    assert double.batches == [[1, 2], [101, 102], [3, 4]]


def test_no_batch_starts_while_a_click_holds_the_encoder(prefetcher):
    double = GatedEncodeDouble()
    with prefetcher.hold():
        prefetcher.focus("a", _plan(double, "img", [1, 2]))
        assert not prefetcher.wait_idle(0.3)
        assert double.batches == []
    assert prefetcher.wait_idle(10)
    assert double.batches == [[1, 2]]


def test_a_failing_encode_does_not_stop_the_worker(prefetcher):
    def failing(indices):
        raise RuntimeError("out of memory")

    prefetcher.focus("a", PrefetchPlan("bad", [1, 2], failing, lambda i: False))
    assert prefetcher.wait_idle(10)
    double = GatedEncodeDouble()
    prefetcher.focus("a", _plan(double, "good", [3]))
    assert prefetcher.wait_idle(10)
    assert double.batches == [[3]]


class SlowSlicePredictorDouble:
    """Test double for PromptPredictor: encoding chosen slices waits on a gate; masks mark the clicked pixel.

    The slice is recognised from the pixels: the image's first row is distinct for every slice here.
    """

    device = torch.device("cpu")

    def __init__(self, blocked_rows):
        self.blocked_rows = {tuple(row) for row in blocked_rows}
        self.gate, self.blocked_started = threading.Event(), threading.Event()
        self.encoded = 0

    def encode_batch(self, images, between_blocks=None):
        for rgb in images:
            if tuple(rgb[0, :, 0]) in self.blocked_rows:
                self.blocked_started.set()
                self.gate.wait(30)
        self.encoded += len(images)
        return [ImageEmbedding(features=torch.zeros(1, 1, 1, 1), original_size=rgb.shape[:2]) for rgb in images]

    def predict(self, embedding, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None, multimask=None):
        mask = np.zeros(embedding.original_size, dtype=bool)
        x, y = (int(v) for v in points_xy[0])
        mask[y, x] = True
        return MaskPrediction(mask=mask, low_res_logits=torch.zeros(1, 256, 256), predicted_iou=0.5)


def test_a_prefetch_in_flight_never_blocks_a_click_on_another_slice(tmp_path):
    array = asymmetric_array()
    path = write_volume(tmp_path / "v.nii.gz", array)
    segmenter_probe = InteractiveSegmenter(ModelsDouble(None))
    volume = segmenter_probe.volumes.get(path)
    from medicosam_app.geometry.coordinates import SliceView
    from medicosam_app.embeddings.intensity import slice_to_rgb

    view = SliceView.create(volume.shape, volume.direction, 2)
    value_range = segmenter_probe.embedder.intensity.volume_range(volume.array)
    first_row = lambda k: slice_to_rgb(view.extract(volume.array, k), value_range)[0, :, 0]  # noqa: E731
    double = SlowSlicePredictorDouble([first_row(6)])  # slice 6 (a neighbour of 5) encodes slowly

    prefetcher = Prefetcher(lower_priority=False)
    try:
        segmenter = InteractiveSegmenter(
            ModelsDouble(double), embeddings=EmbeddingCache(), prefetcher=prefetcher, prefetch_radius=2
        )
        segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v", client_id="a"))
        assert double.blocked_started.wait(10), "the prefetch of slice 6 should be running"

        result = segmenter.segment(path, requested({"foreground": [[12, 20, 9]]}), ClickContext("v", client_id="b"))
        assert result.slice_index == 9 and result.label[12, 20, 9] == 1
        assert not double.gate.is_set(), "the click finished while the prefetch was still in flight"
    finally:
        double.gate.set()
        prefetcher.stop()


def test_neighbours_of_a_clicked_slice_are_ready_for_the_next_click(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array())
    double = SlowSlicePredictorDouble([])
    prefetcher = Prefetcher(lower_priority=False)
    try:
        segmenter = InteractiveSegmenter(
            ModelsDouble(double), embeddings=EmbeddingCache(), prefetcher=prefetcher, prefetch_radius=2
        )
        segmenter.segment(path, requested({"foreground": [[30, 7, 5]]}), ClickContext("v"))
        assert prefetcher.wait_idle(10)
        assert double.encoded == 5  # slice 5 by the click, then 6, 4, 7, 3
        nxt = segmenter.segment(path, requested({"foreground": [[30, 7, 7]]}), ClickContext("v"))
        assert nxt.embedding_source == "memory"
    finally:
        prefetcher.stop()


def test_background_work_waits_for_a_quiet_moment_after_a_click():
    worker = Prefetcher(lower_priority=False, quiet_seconds=0.6)
    try:
        double = GatedEncodeDouble()
        with worker.hold():
            worker.focus("a", _plan(double, "img", [1]))
        assert not worker.wait_idle(0.3), "still within the quiet period after the click"
        assert double.batches == []
        assert worker.wait_idle(10)
        assert double.batches == [[1]]
    finally:
        worker.stop()


def test_batch_size_by_device_unless_configured():
    """auto: measured on a GPU (tests/model/test_batch_choice.py), 1 on a CPU; a configured size wins over each
    plan's own."""
    from medicosam_app.settings import Settings

    assert Settings.from_conf({}).encode_batch_size is None
    assert Settings.from_conf({"encode_batch_size": "auto"}).encode_batch_size is None
    assert Settings.from_conf({"encode_batch_size": "4"}).encode_batch_size == 4
    for bad in ("0", "-2", "eight", "2.5"):
        with pytest.raises(ValueError, match="encode_batch_size must be auto or a whole number"):
            Settings.from_conf({"encode_batch_size": bad})

    for configured, expected in ((None, [[1, 2, 3], [4, 5]]), (2, [[1, 2], [3, 4], [5]])):
        worker = Prefetcher(batch_size=configured, lower_priority=False)
        try:
            double = GatedEncodeDouble()
            worker.focus("a", PrefetchPlan("img", [1, 2, 3, 4, 5], double, lambda i: i in double.done, batch_size=3))
            assert worker.wait_idle(10)
            assert double.batches == expected
        finally:
            worker.stop()


def test_the_embedders_plans_take_their_batch_size_from_the_encoder(tmp_path):
    """Plans encode as many slices per pass as the encoder's measured or configured batch size (predictor doubles:
    only the device and the size are read)."""
    import types

    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.geometry.coordinates import SliceView
    from medicosam_app.geometry.volume import read_volume

    volume = read_volume(write_volume(tmp_path / "v.nii.gz", asymmetric_array()))
    view = SliceView.create(volume.shape, volume.direction, 2)
    for device, expected in (("cuda", 12), ("cpu", 1)):
        worker = Prefetcher(lower_priority=False, quiet_seconds=3600)  # plans stay queued
        try:
            predictor_double = types.SimpleNamespace(device=torch.device(device), encode_batch_size=expected)
            embedder = SliceEmbedder(ModelsDouble(predictor_double), prefetcher=worker, prefetch_radius=4)
            with worker.hold():
                embedder.prefetch_around("client", volume, view, 5)
            assert worker._plans["client"].batch_size == expected
        finally:
            worker.stop()
