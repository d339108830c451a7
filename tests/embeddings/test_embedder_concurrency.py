"""Clicks, 3D propagations, whole-volume encodes and the prefetch worker share one embedder: none may wait
on another in a cycle. Hundreds of random interleavings with a slow encoder that pauses between blocks as
the real one does; every request must finish, and every cached embedding must belong to its slice."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch

from conftest import ModelsDouble, asymmetric_array, write_volume
from conftest import requested
from medicosam_app.geometry.coordinates import SliceView
from medicosam_app.embeddings.memory_cache import EmbeddingCache
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.predictor import ImageEmbedding, MaskPrediction
from medicosam_app.embeddings.prefetch import Prefetcher
from medicosam_app.interactive.propagation_settings import PropagationSettings
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter

BLOCKS = 4
SECONDS_PER_BLOCK = 0.003


class SlowEncoderDouble:
    """Test double for PromptPredictor.

    Encoding takes ``BLOCKS`` steps and calls ``between_blocks`` before each, as the real encoder does, so
    the prefetch worker really pauses mid-encode. The "embedding" is the slice's first pixel row, so a test
    can tell which slice an embedding came from. A mask marks the clicked pixel (or the box centre).
    """

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.encodes = 0
        self.rows = []  # the first pixel row of every image encoded, in order
        self._lock = threading.Lock()

    def encode_batch(self, images, between_blocks=None):
        for _ in range(BLOCKS):
            if between_blocks is not None:
                between_blocks()
            time.sleep(SECONDS_PER_BLOCK)
        with self._lock:
            self.encodes += len(images)
            self.rows += [rgb[0, :, 0].astype(np.float32) for rgb in images]
        return [
            ImageEmbedding(features=torch.from_numpy(rgb[0, :, 0].astype(np.float32)).reshape(1, 1, 1, -1),
                           original_size=rgb.shape[:2])
            for rgb in images
        ]

    def predict(self, embedding, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None, multimask=None):
        mask = np.zeros(embedding.original_size, dtype=bool)
        if points_xy is not None and len(points_xy):
            x, y = (int(v) for v in points_xy[0])
        else:
            x0, y0, x1, y1 = box_xyxy
            x, y = int((x0 + x1) / 2), int((y0 + y1) / 2)
        mask[max(0, y - 1): y + 2, max(0, x - 1): x + 2] = True
        return MaskPrediction(mask=mask, low_res_logits=torch.zeros(1, 256, 256), predicted_iou=0.9)


@pytest.fixture()
def shared_embedder(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array(shape=(40, 30, 16)))
    double = SlowEncoderDouble()
    models = ModelsDouble(double)
    # A short quiet period, so the worker really runs between and during requests.
    prefetcher = Prefetcher(lower_priority=False, quiet_seconds=0.005)
    # Room for five slice embeddings: evictions keep clicks, propagations and prefetch encoding all the time.
    row_bytes = 4 * 30  # the double's embedding: one float32 pixel row of a 40×30 display slice
    embeddings = EmbeddingCache(max_bytes=5 * row_bytes)
    embedder = SliceEmbedder(models, embeddings=embeddings, prefetcher=prefetcher, prefetch_radius=3)
    yield path, double, models, embedder
    prefetcher.stop()


def _run_bounded(work, timeout: float) -> None:
    """Run ``work`` on a thread; fail (instead of hanging the suite) if it does not finish in time."""
    errors = []

    def target():
        try:
            work()
        except BaseException as error:  # noqa: BLE001 — reported below
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "a request hung: a click, propagation or encode waited in a cycle"
    if errors:
        raise errors[0]


def test_a_click_on_the_slice_being_prefetched_waits_for_that_encode_only(shared_embedder):
    """The gesture of issue 11: click k, scroll to k+1 while it is being prefetched, click; then k-1."""
    path, double, models, embedder = shared_embedder
    segmenter = InteractiveSegmenter(models, embedder=embedder, volumes=None)
    prefetcher = embedder.prefetcher
    gate, worker_encoding = threading.Event(), threading.Event()
    original = double.encode_batch

    def encode_waiting_in_the_worker(images, between_blocks=None):
        if prefetcher.in_worker():  # hold the worker mid-encode of the first neighbour until the click comes
            between_blocks()
            worker_encoding.set()
            gate.wait(10)
        return original(images, between_blocks)

    double.encode_batch = encode_waiting_in_the_worker
    segmenter.segment(path, requested({"foreground": [[20, 10, 7]]}), ClickContext("v", client_id="a"))
    assert worker_encoding.wait(10), "the worker never started slice 8 (the first neighbour of 7)"
    # The worker is inside slice 8's encode; it goes on only once the click below is waiting for it.
    threading.Timer(0.3, gate.set).start()
    results = []
    _run_bounded(lambda: results.append(
        segmenter.segment(path, requested({"foreground": [[21, 11, 8]]}), ClickContext("v", client_id="a"))), timeout=10)
    _run_bounded(lambda: results.append(
        segmenter.segment(path, requested({"foreground": [[22, 12, 6]]}), ClickContext("v", client_id="a"))), timeout=10)
    assert [r.slice_index for r in results] == [8, 6]
    assert results[0].label[21, 11, 8] == 1 and results[1].label[22, 12, 6] == 1
    row8 = _first_row(embedder, *_slice(segmenter, path, 8))
    assert sum(np.array_equal(row, row8) for row in double.rows) == 1, "slice 8 was encoded once, by the worker"
    assert prefetcher.wait_idle(10)
    assert prefetcher.stats["encoded"] > 0, "the worker went on after the clicks"


def _slice(segmenter, path, index):
    volume = segmenter.volumes.get(path)
    return volume, SliceView.create(volume.shape, volume.direction, 2), index


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_interleavings_of_clicks_propagations_and_prefetch_never_hang(shared_embedder, seed):
    path, double, models, embedder = shared_embedder
    segmenter = InteractiveSegmenter(models, embedder=embedder)
    propagator = VolumeSegmenter(models, embedder, segmenter.volumes)
    volume, view, _ = _slice(segmenter, path, 0)
    rng = random.Random(seed)
    rounds, clients = 240, 4
    finished = []
    lock = threading.Lock()

    def client(number: int) -> None:
        local = random.Random(rng.random())
        k = local.randrange(view.num_slices)
        for _ in range(rounds // clients):
            time.sleep(local.random() * 0.02)  # an annotator's pause: the prefetch worker gets to run
            # Mostly scroll to a neighbour (the slices the worker is prefetching), sometimes jump.
            if local.random() < 0.2:
                k = local.randrange(view.num_slices)
            else:
                k = min(view.num_slices - 1, max(0, k + local.choice((-1, 1))))
            i, j = local.randrange(5, 35), local.randrange(5, 25)
            action = local.random()
            context = ClickContext("v", client_id=f"c{number}", reset_state=local.random() < 0.2)
            if action < 0.6:
                result = segmenter.segment(path, requested({"foreground": [[i, j, k]]}), context)
                assert result.slice_index == k and result.label[i, j, k] == 1
            elif action < 0.85:
                low = max(0, k - 3)
                roi = [i - 2, i + 2, j - 2, j + 2, low, min(view.num_slices - 1, k + 3)]
                result = propagator.segment(path, requested({"roi": roi}), context, settings=PropagationSettings())
                assert result.result.masks, "the propagation produced no slice"
            else:  # the semantic task's path: a batch of slices encoded from a request thread
                batch = sorted(local.sample(range(view.num_slices), 3))
                embedder.encode_into_cache(volume, view, batch)
                for index in batch:
                    embedder.embedding(volume, view, index)
            with lock:
                finished.append(number)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"hung after {len(finished)} of {rounds} requests"
    assert len(finished) == rounds // clients * clients, "a client failed (see the thread's exception above)"
    assert embedder.prefetcher.wait_idle(30), "the prefetch worker is stuck"
    assert double.encodes > rounds, "the cache should have kept everyone encoding (no contention tested)"
    assert embedder.prefetcher.stats["encoded"] > 0

    # Every cached embedding is the one of its own slice.
    for index in range(view.num_slices):
        key = embedder.key(volume, view, index)
        cached = embedder.embeddings._cache.peek(key)
        if cached is not None:
            rgb_row = _first_row(embedder, volume, view, index)
            assert torch.equal(cached[0].features.flatten(), torch.from_numpy(rgb_row)), f"slice {index}"


def _first_row(embedder: SliceEmbedder, volume, view, index) -> np.ndarray:
    from medicosam_app.embeddings.intensity import slice_to_rgb

    rgb = slice_to_rgb(view.extract(volume.array, index), embedder._volume_range(volume))
    return rgb[0, :, 0].astype(np.float32)
