"""Propagation's read-ahead: which slices a walk asks for next, batches encoded ahead of the decoder (with and
without a worker overlapping them), and the same masks as slice-by-slice encoding with the real tiny model."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import asymmetric_array, requested, write_volume
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.interactive.propagation_settings import PropagationSettings
from medicosam_app.interactive.read_ahead import ReadAhead, WalkAhead
from medicosam_app.interactive.slice_segmenter import ClickContext
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter
from medicosam_app.model.provider import ModelProvider


def test_a_walk_reads_ahead_in_its_own_direction_and_step_within_bounds():
    walk = WalkAhead((2, 20), batch_size=4)
    assert walk.next_slices(10) == [10]  # the first slice asked: no walk yet
    walk.asked(10)
    assert walk.next_slices(9) == [9, 8, 7, 6]  # walking down from 10
    walk.asked(9)
    assert walk.next_slices(11) == [11, 12, 13, 14]  # up from 10 (nearest asked), not down from 9
    walk.asked(11)
    walk.asked(5)
    assert walk.next_slices(4) == [4, 3, 2]  # the lower bound cuts the batch
    assert walk.next_slices(14) == [14, 17, 20]  # every 3rd slice from 11 (a frame step), up to the bound
    assert walk.next_slices(10) == [10]  # asked before: nothing to infer


def test_a_gap_filled_from_both_ends_reads_ahead_towards_each_end():
    walk = WalkAhead((0, 30), batch_size=3)
    for anchor in (5, 15):
        walk.asked(anchor)
    assert walk.next_slices(6) == [6, 7, 8]  # the lower end walks up
    walk.asked(6)
    assert walk.next_slices(14) == [14, 13, 12]  # the upper end walks down


class EncoderDouble:
    """Test double for the embedder: records each batch it encodes (from any thread) and what is embedded."""

    def __init__(self, gate: threading.Event = None):
        self.embedded = set()
        self.batches = []
        self.threads = []
        self.gate = gate

    def encode(self, indices):
        if self.gate is not None and threading.current_thread() is not threading.main_thread():
            assert self.gate.wait(10)
        self.batches.append(list(indices))
        self.threads.append(threading.current_thread().name)
        self.embedded.update(indices)

    def is_embedded(self, index):
        return index in self.embedded


def test_a_miss_encodes_the_walks_next_slices_in_one_batch():
    double = EncoderDouble()
    double.embedded.add(7)  # cached already: not encoded again
    ahead = ReadAhead((0, 11), 4, double.encode, double.is_embedded)
    for index in [5, 6, 7, 8, 9, 10, 11, 4, 3, 2, 1, 0]:  # anchor, walk up, walk down
        ahead.before_decoding(index)
        assert double.is_embedded(index)
    assert double.batches == [[5], [6, 8, 9], [10, 11], [4, 3, 2, 1], [0]]
    assert sorted(i for batch in double.batches for i in batch) == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]


def test_with_overlap_the_next_batch_is_encoded_on_the_worker_and_the_walk_waits_for_it():
    gate = threading.Event()
    double = EncoderDouble(gate)
    ahead = ReadAhead((0, 20), 3, double.encode, double.is_embedded, overlap=True)
    try:
        ahead.before_decoding(10)
        ahead.before_decoding(11)  # a miss: 11-13 now, 14-16 queued on the worker (held at the gate)
        assert double.batches == [[10], [11, 12, 13]]
        ahead.before_decoding(12)
        ahead.before_decoding(13)
        assert not double.is_embedded(14)
        gate.set()
        ahead.before_decoding(14)  # waits for the worker's batch, which queues 17-19 in turn
        assert double.is_embedded(14)
        for index in (15, 16, 17, 18, 19, 20):
            ahead.before_decoding(index)
    finally:
        ahead.close()
    encoded = [i for batch in double.batches for i in batch]
    assert sorted(encoded) == list(range(10, 21)) and len(encoded) == len(set(encoded)), double.batches
    assert double.batches[:4] == [[10], [11, 12, 13], [14, 15, 16], [17, 18, 19]]
    assert double.threads[2].startswith("propagation-read-ahead")
    assert double.threads[1] == threading.main_thread().name


def test_a_worker_error_reaches_the_request():
    def failing(indices):
        if 5 in indices:
            raise RuntimeError("CUDA error (double)")

    embedded = set()
    ahead = ReadAhead((0, 9), 2, lambda ix: (failing(ix), embedded.update(ix)), embedded.__contains__, overlap=True)
    try:
        ahead.before_decoding(2)
        ahead.before_decoding(3)  # encodes 3-4, queues 5-6 on the worker, which fails
        ahead.before_decoding(4)
        with pytest.raises(RuntimeError, match="CUDA error"):
            ahead.before_decoding(5)
    finally:
        ahead.close()


@pytest.mark.parametrize("overlap", [False, True])
def test_batched_read_ahead_gives_the_masks_of_slice_by_slice_encoding(tmp_path, tiny_checkpoint, overlap):
    """The real tiny model on an asymmetric volume, the whole axis walked both ways: every mask, stop and predicted
    IoU equal to one slice per encoder pass, while the encoder ran in batches."""
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array((40, 30, 17)))
    settings = PropagationSettings(iou_threshold=0.0, min_predicted_iou=0.0)  # a random model: walk every slice
    prompts = requested({"foreground": [[28, 9, 6]]})
    outcomes, batch_sizes = [], []
    for batch_size in (1, 4):
        # float32 embeddings: a batched product may differ from a single one in the last bits, which float16
        # rounding could turn into a step that moves an edge pixel; this test is about the batching
        models = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                               encode_batch_size=batch_size, embedding_storage="fp32")
        predictor = models.predictor()
        sizes = []
        encode_batch = predictor.encode_batch

        def counting_encode_batch(images, between_blocks=None, sizes=sizes, encode_batch=encode_batch):
            sizes.append(len(images))
            return encode_batch(images, between_blocks)

        predictor.encode_batch = counting_encode_batch  # a spy on the real encoder: counts, changes nothing
        segmenter = VolumeSegmenter(models, SliceEmbedder(models), overlap_read_ahead=overlap)
        outcomes.append(segmenter.segment(path, prompts, ClickContext("v"), settings=settings))
        batch_sizes.append(sizes)
    one_by_one, batched = outcomes
    assert one_by_one.result.slice_range == batched.result.slice_range == (0, 16)
    assert np.array_equal(one_by_one.label, batched.label)
    assert one_by_one.result.predicted_iou == batched.result.predicted_iou
    assert one_by_one.result.stops == batched.result.stops
    assert batch_sizes[0] == [1] * 17
    assert sum(batch_sizes[1]) == 17 and max(batch_sizes[1]) == 4 and len(batch_sizes[1]) < 17, batch_sizes[1]
