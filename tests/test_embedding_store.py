"""The on-disk embedding store and the two-level cache: keys, restarts, budgets, damaged files."""

from __future__ import annotations

import os
import time

import torch

from medicosam_app.embedding_store import EmbeddingDiskStore
from medicosam_app.embeddings import EmbeddingCache, EmbeddingKey
from medicosam_app.predictor import ImageEmbedding

KEY = EmbeddingKey("imagehash", 2, 7, "v1:volume", "ckpt-fp32")


def _embedding(seed: int, channels: int = 8) -> ImageEmbedding:
    generator = torch.Generator().manual_seed(seed)
    return ImageEmbedding(features=torch.randn(1, channels, 16, 16, generator=generator), original_size=(40, 30))


class CountingEncoderDouble:
    """Test double for an encoder: returns a fixed embedding and counts the calls."""

    def __init__(self, embedding: ImageEmbedding):
        self.embedding, self.calls = embedding, 0

    def __call__(self) -> ImageEmbedding:
        self.calls += 1
        return self.embedding


def test_round_trip_is_exact(tmp_path):
    store = EmbeddingDiskStore(tmp_path)
    original = _embedding(1)
    store.save(KEY, original)
    loaded = store.load(KEY)
    assert torch.equal(loaded.features, original.features)
    assert loaded.original_size == (40, 30)


def test_every_key_field_selects_a_different_file(tmp_path):
    store = EmbeddingDiskStore(tmp_path)
    store.save(KEY, _embedding(1))
    variants = [
        EmbeddingKey("otherimage", 2, 7, "v1:volume", "ckpt-fp32"),
        EmbeddingKey("imagehash", 1, 7, "v1:volume", "ckpt-fp32"),
        EmbeddingKey("imagehash", 2, 8, "v1:volume", "ckpt-fp32"),
        EmbeddingKey("imagehash", 2, 7, "v2:volume", "ckpt-fp32"),  # preprocessing version changed
        EmbeddingKey("imagehash", 2, 7, "v1:window:40.0:400.0", "ckpt-fp32"),  # another intensity policy
        EmbeddingKey("imagehash", 2, 7, "v1:volume", "other-ckpt-fp32"),  # another checkpoint
        EmbeddingKey("imagehash", 2, 7, "v1:volume", "ckpt-bf16"),  # another precision
    ]
    for key in variants:
        assert store.load(key) is None, key
    assert store.load(KEY) is not None


def test_a_restart_reuses_the_disk_cache(tmp_path):
    encoder = CountingEncoderDouble(_embedding(3))
    first = EmbeddingCache(disk=EmbeddingDiskStore(tmp_path))
    _, source = first.get_or_encode(KEY, encoder)
    assert source == "encoded" and encoder.calls == 1

    restarted = EmbeddingCache(disk=EmbeddingDiskStore(tmp_path))  # a new process: empty memory
    assert restarted.contains(KEY)
    embedding, source = restarted.get_or_encode(KEY, encoder)
    assert source == "disk" and encoder.calls == 1
    assert torch.equal(embedding.features, encoder.embedding.features)
    _, source = restarted.get_or_encode(KEY, encoder)
    assert source == "memory"


def test_memory_budget_evicts_least_recently_used():
    one = _embedding(0).nbytes
    cache = EmbeddingCache(max_bytes=2 * one)
    keys = [EmbeddingKey("img", 2, index, "p", "e") for index in range(3)]
    cache.get_or_encode(keys[0], lambda: _embedding(0))
    cache.get_or_encode(keys[1], lambda: _embedding(1))
    cache.get_or_encode(keys[0], lambda: _embedding(0))  # 0 is now the most recent
    cache.get_or_encode(keys[2], lambda: _embedding(2))
    assert cache.stats["bytes"] <= 2 * one
    assert cache.contains(keys[0]) and cache.contains(keys[2]) and not cache.contains(keys[1])


def test_disk_budget_evicts_the_least_recently_used_files(tmp_path):
    probe = EmbeddingDiskStore(tmp_path / "probe")
    probe.save(KEY, _embedding(0))
    size = probe.nbytes
    store = EmbeddingDiskStore(tmp_path / "store", max_bytes=4 * size + size // 2)
    keys = [EmbeddingKey("img", 2, index, "p", "e") for index in range(6)]
    for number, key in enumerate(keys[:3]):
        store.save(key, _embedding(number))
        os.utime(store.path_for(key), (time.time() - 100 + number, time.time() - 100 + number))
    assert store.load(keys[0]) is not None  # touched: now the most recently used
    for number, key in enumerate(keys[3:], start=3):
        store.save(key, _embedding(number))
    on_disk = sorted(path.name for path in (tmp_path / "store").rglob("*.npz"))
    assert store.nbytes <= store.max_bytes
    assert sum(path.stat().st_size for path in (tmp_path / "store").rglob("*.npz")) <= store.max_bytes
    assert store.path_for(keys[0]).name in on_disk, "a recently read file must survive eviction"
    assert store.path_for(keys[5]).name in on_disk
    assert store.load(keys[1]) is None and store.load(keys[2]) is None


def test_a_damaged_file_is_a_miss_and_is_removed(tmp_path):
    store = EmbeddingDiskStore(tmp_path)
    store.save(KEY, _embedding(1))
    path = store.path_for(KEY)
    path.write_bytes(path.read_bytes()[:100])  # a crash mid-copy, a full disk...
    assert store.load(KEY) is None
    assert not path.exists()
    encoder = CountingEncoderDouble(_embedding(2))
    _, source = EmbeddingCache(disk=store).get_or_encode(KEY, encoder)
    assert source == "encoded" and encoder.calls == 1


def test_no_temporary_files_are_left_behind(tmp_path):
    store = EmbeddingDiskStore(tmp_path)
    for index in range(3):
        store.save(EmbeddingKey("img", 0, index, "p", "e"), _embedding(index))
    assert not list(tmp_path.rglob("*.tmp"))
