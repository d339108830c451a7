"""The on-disk embedding store and the two-level cache: keys, restarts, budgets, damaged files."""

from __future__ import annotations

import os
import time

import torch

from medicosam_app.embeddings.disk_store import EmbeddingDiskStore
from medicosam_app.embeddings.memory_cache import EmbeddingCache, EmbeddingKey
from medicosam_app.model.predictor import ImageEmbedding

KEY = EmbeddingKey("imagehash", 2, 7, "v1:volume", "ckpt-fp32", "r1+c0+")


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
        EmbeddingKey("otherimage", 2, 7, "v1:volume", "ckpt-fp32", "r1+c0+"),
        EmbeddingKey("imagehash", 1, 7, "v1:volume", "ckpt-fp32", "r1+c0+"),
        EmbeddingKey("imagehash", 2, 8, "v1:volume", "ckpt-fp32", "r1+c0+"),
        EmbeddingKey("imagehash", 2, 7, "v2:volume", "ckpt-fp32", "r1+c0+"),  # preprocessing version changed
        EmbeddingKey("imagehash", 2, 7, "v1:window:40.0:400.0", "ckpt-fp32", "r1+c0+"),  # another intensity policy
        EmbeddingKey("imagehash", 2, 7, "v1:volume", "other-ckpt-fp32", "r1+c0+"),  # another checkpoint
        EmbeddingKey("imagehash", 2, 7, "v1:volume", "ckpt-bf16", "r1+c0+"),  # another precision
        EmbeddingKey("imagehash", 2, 7, "v1:volume", "ckpt-fp32", "r1-c0+"),  # same voxels, flipped header
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
    keys = [EmbeddingKey("img", 2, index, "p", "e", "r1+c0+") for index in range(3)]
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
    keys = [EmbeddingKey("img", 2, index, "p", "e", "r1+c0+") for index in range(6)]
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
        store.save(EmbeddingKey("img", 0, index, "p", "e", "r1+c0+"), _embedding(index))
    assert not list(tmp_path.rglob("*.tmp"))


def test_temporary_files_of_a_killed_writer_are_removed_at_start_but_fresh_ones_kept(tmp_path):
    import os
    import time

    abandoned = tmp_path / "enc" / "old.tmp"
    abandoned.parent.mkdir()
    abandoned.write_bytes(b"half an embedding")
    os.utime(abandoned, (time.time() - 3600, time.time() - 3600))
    in_progress = tmp_path / "enc" / "new.tmp"  # another process (precompute) is writing it right now
    in_progress.write_bytes(b"being written")
    EmbeddingDiskStore(tmp_path)
    assert not abandoned.exists() and in_progress.exists()


def test_the_same_voxels_under_a_flipped_header_are_not_served_from_the_cache(tmp_path):
    """A corrected or flipped direction shows SAM another picture: no embedding may be reused, not even
    from disk after a restart. A header change that keeps the display orientation may reuse them."""
    import numpy as np

    from conftest import ModelsDouble, asymmetric_array, write_volume
    from medicosam_app.geometry.coordinates import SliceView
    from medicosam_app.model.predictor import ImageEmbedding as Embedding
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.geometry.volume import read_volume

    class CountingPredictorDouble:
        """Test double for PromptPredictor: counts encoded images; the embedding is the first pixel row."""

        def __init__(self):
            self.encoded = 0

        def encode_batch(self, images, between_blocks=None):
            self.encoded += len(images)
            return [Embedding(torch.from_numpy(rgb[0, :, 0].astype(np.float32)).reshape(1, 1, 1, -1), rgb.shape[:2])
                    for rgb in images]

    array = asymmetric_array()
    lps = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    flipped = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # j now runs posterior → anterior
    c, s = np.cos(np.radians(3)), np.sin(np.radians(3))
    tilted = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)  # 3° in plane: the same screen picture
    volumes = {name: read_volume(write_volume(tmp_path / f"{name}.nii.gz", array, direction=d))
               for name, d in (("lps", lps), ("flipped", flipped), ("tilted", tilted))}
    assert len({v.content_hash for v in volumes.values()}) == 1, "same voxels"

    def embed(name):
        predictor = CountingPredictorDouble()
        embedder = SliceEmbedder(ModelsDouble(predictor), embeddings=EmbeddingCache(disk=EmbeddingDiskStore(tmp_path / "disk")))
        volume = volumes[name]
        view = SliceView.create(volume.shape, volume.direction, 2)
        embedding, source = embedder.embedding(volume, view, 5)
        return embedding, source, view

    first, source, lps_view = embed("lps")
    assert source == "encoded"
    again, source, _ = embed("flipped")  # a new embedder and empty memory: as after a restart
    assert source == "encoded", "the flipped header reused the other orientation's embedding"
    assert not torch.equal(first.features, again.features)
    _, source, tilted_view = embed("tilted")
    assert tilted_view.orientation == lps_view.orientation and source == "disk"
