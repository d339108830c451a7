"""Embeddings kept at half precision when the masks agree, written as float16 losslessly, and written on a
background thread that never loses a slice: served from its queue until written, flushed at the end."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from medicosam_app.embeddings.disk_store import EmbeddingDiskStore
from medicosam_app.embeddings.memory_cache import EmbeddingCache, EmbeddingKey
from medicosam_app.model.predictor import ImageEmbedding
from medicosam_app.model.provider import ModelProvider
from medicosam_app.model.storage_choice import choose_storage, half_precision_mask_iou

KEY = EmbeddingKey("imagehash", 2, 7, "v1:volume", "ckpt-fp32", "r1+c0+")


def _embedding(seed: int, half: bool = False) -> ImageEmbedding:
    features = torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(seed))
    if half:
        features = features.half().float()
    return ImageEmbedding(features=features, original_size=(40, 30))


def test_float16_values_are_written_as_float16_and_others_as_float32(tmp_path):
    store = EmbeddingDiskStore(tmp_path)
    rounded, full = _embedding(1, half=True), _embedding(2)
    other = EmbeddingKey("other", 2, 7, "v1:volume", "ckpt-fp32", "r1+c0+")
    store.save(KEY, rounded)
    store.save(other, full)
    with np.load(store.path_for(KEY)) as stored:
        assert stored["features"].dtype == np.float16
    with np.load(store.path_for(other)) as stored:
        assert stored["features"].dtype == np.float32
    assert store.path_for(KEY).stat().st_size < 0.6 * store.path_for(other).stat().st_size
    for key, original in ((KEY, rounded), (other, full)):
        loaded = store.load(key)
        assert loaded.features.dtype == torch.float32
        assert torch.equal(loaded.features, original.features)  # lossless either way


class GatedDiskStoreDouble(EmbeddingDiskStore):
    """Test double: the real store whose writes wait for a gate, so a slice can be caught in the queue."""

    def __init__(self, *args, **kwargs):
        self.gate = threading.Event()
        self.writer_threads = []
        super().__init__(*args, **kwargs)

    def _write(self, path, embedding):
        assert self.gate.wait(10)
        self.writer_threads.append(threading.current_thread().name)
        super()._write(path, embedding)


def test_background_writes_are_served_from_the_queue_until_written_and_flushed(tmp_path):
    store = GatedDiskStoreDouble(tmp_path, background=True)
    cache = EmbeddingCache(disk=store)
    embedding = _embedding(3, half=True)
    cache.put(KEY, embedding)  # returns at once: the write waits at the gate
    assert not store.path_for(KEY).exists()
    assert store.has(KEY) and store.waiting_writes == 1
    assert cache.stats["disk"]["waiting_writes"] == 1
    assert store.load(KEY) is embedding
    assert not store.flush(timeout=0.05)
    store.gate.set()
    assert store.flush(timeout=10)
    assert store.path_for(KEY).is_file() and store.waiting_writes == 0
    assert store.writer_threads == ["embedding-disk-writer"]
    assert torch.equal(EmbeddingDiskStore(tmp_path).load(KEY).features, embedding.features)  # as a restart reads it


def test_a_background_write_that_fails_is_logged_and_the_writer_goes_on(tmp_path, caplog):
    store = EmbeddingDiskStore(tmp_path, background=True)
    blocker = tmp_path / "ckpt-fp32"
    blocker.write_text("a file where the folder should be")  # the first key's folder cannot be made
    store.save(KEY, _embedding(4))
    other = EmbeddingKey("other", 2, 7, "v1:volume", "fine", "r1+c0+")
    store.save(other, _embedding(5))
    assert store.flush(timeout=10)
    assert store.load(KEY) is None and store.load(other) is not None
    assert "Could not store embedding" in caplog.text


def test_storage_setting_forces_or_measures_once_and_remembers(tmp_path, tiny_checkpoint):
    models = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                           embedding_storage="fp32", cache_dir=str(tmp_path / "cache"))
    predictor = models.predictor()
    assert choose_storage(predictor, "fp16", "x", tmp_path).half is True
    assert choose_storage(predictor, "fp32", "x", tmp_path).half is False
    with pytest.raises(ValueError, match="embedding_storage"):
        choose_storage(predictor, "fp8", "x", tmp_path)
    auto = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                         cache_dir=str(tmp_path / "cache"))
    auto.predictor()
    assert auto.status["embedding_storage"]["half"] == auto.predictor().half_embeddings  # the default: auto
    assert list((tmp_path / "cache" / "embedding_storage").glob("storage-*.json"))
    iou = half_precision_mask_iou(predictor)
    first = choose_storage(predictor, "auto", "x", tmp_path)
    assert first.mean_mask_iou == round(iou, 4) and first.half == (iou >= 0.98) and not first.from_cache
    again = choose_storage(predictor, "auto", "x", tmp_path)
    assert again.from_cache and again.half == first.half
    assert not choose_storage(predictor, "auto", "another checkpoint", tmp_path).from_cache


def test_half_embeddings_are_float16_values_and_keyed_apart(tmp_path, tiny_checkpoint):
    full = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                         embedding_storage="fp32")
    half = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                         embedding_storage="fp16", cache_dir=str(tmp_path))
    image = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    exact = full.predictor().encode(image).features
    rounded = half.predictor().encode(image).features
    assert rounded.dtype == torch.float32 and torch.equal(rounded, exact.half().float())
    assert half.status["embedding_storage"]["half"] is True and full.status["embedding_storage"]["half"] is False
    assert half.encoder_key != full.encoder_key  # cached full-precision embeddings are not served as rounded ones
    assert half.encoder_key.endswith("fp32-half")
