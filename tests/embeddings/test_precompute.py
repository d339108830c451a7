"""``python -m medicosam_app precompute``: fills the disk cache the server reads, and is idempotent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import asymmetric_array, write_volume
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.services import build_model_provider, build_slice_embedder
from medicosam_app.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medicosam_app", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )


def _studies(tmp_path: Path) -> Path:
    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(studies / "a.nii.gz", asymmetric_array((20, 16, 5), seed=1))
    write_volume(studies / "b.nii.gz", asymmetric_array((18, 14, 3), seed=2))
    (studies / "labels" / "final").mkdir(parents=True)
    write_volume(studies / "labels" / "final" / "a.nii.gz", (asymmetric_array((20, 16, 5), seed=1) > 0).astype("uint8"))
    (studies / "broken.nii.gz").write_bytes(b"not an image")
    return studies


def test_precompute_fills_the_cache_the_server_reads_and_is_idempotent(tmp_path, tiny_checkpoint):
    studies, cache = _studies(tmp_path), tmp_path / "cache"
    common = ["--studies", str(studies), "--checkpoint", str(tiny_checkpoint), "--cache-dir", str(cache), "--no-download", "--quiet"]

    first = _run("precompute", *common, "--batch-size", "2")
    assert first.returncode == 0, first.stderr
    assert "2 images, 8 slices: 8 encoded, 0 already cached" in first.stdout
    assert "1 images skipped (broken.nii.gz)" in first.stdout
    assert len(list((cache / "embeddings").rglob("*.npz"))) == 8

    again = _run("precompute", *common)
    assert again.returncode == 0 and "0 encoded, 8 already cached" in again.stdout

    # The server builds its embedder from the same settings: its first click comes from disk.
    settings = Settings.from_conf({"checkpoint": str(tiny_checkpoint), "cache_dir": str(cache), "download": "false"})
    models = build_model_provider(settings)
    segmenter = InteractiveSegmenter(models, embedder=build_slice_embedder(settings, models))
    result = segmenter.segment(studies / "b.nii.gz", requested({"foreground": [[5, 5, 1]]}), ClickContext("b"))
    assert result.embedding_source == "disk"


def test_precompute_along_other_axes(tmp_path, tiny_checkpoint):
    studies, cache = _studies(tmp_path), tmp_path / "cache"
    done = _run("precompute", "--studies", str(studies / "a.nii.gz"), "--checkpoint", str(tiny_checkpoint),
                "--cache-dir", str(cache), "--no-download", "--quiet", "--axis", "0", "--axis", "1")
    assert done.returncode == 0, done.stderr
    assert "1 images, 36 slices: 36 encoded" in done.stdout  # 20 slices along i + 16 along j


def test_precompute_without_weights_says_what_to_do(tmp_path):
    studies = _studies(tmp_path)
    missing = _run("precompute", "--studies", str(studies), "--cache-dir", str(tmp_path / "empty"), "--no-download")
    assert missing.returncode == 1
    assert "vit_b_medicosam" in missing.stderr or "checkpoint" in missing.stderr.lower()


def test_precompute_on_a_missing_folder_is_a_clear_error(tmp_path):
    result = _run("precompute", "--studies", str(tmp_path / "nowhere"), "--no-download")
    assert result.returncode == 1 and "neither an image file nor a folder" in result.stderr


def test_shards_split_a_datastore_disjointly_and_stably(monkeypatch):
    from medicosam_app.embeddings.precompute import Shard

    images = [Path(f"ct_{n:03d}.nii.gz") for n in range(40)]
    parts = [Shard(i, 3).select(images) for i in range(3)]
    assert sorted(sum(parts, [])) == images and all(parts)  # every image in exactly one shard
    assert Shard(1, 3).select(images + [Path("new.nii.gz")])[: len(parts[1])] == parts[1]  # adding keeps the split
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert Shard.from_torchrun() == Shard(1, 2)


def test_two_shards_fill_one_shared_cache(tmp_path, tiny_checkpoint):
    studies, cache = _studies(tmp_path), tmp_path / "cache"
    common = ["--studies", str(studies), "--checkpoint", str(tiny_checkpoint), "--cache-dir", str(cache), "--no-download", "--quiet"]
    first = _run("precompute", *common, "--shard", "0/2")
    second = _run("precompute", *common, "--shard", "1/2")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    counts = [int(out.stdout.split("shard ")[1].split(":")[1].split(" of ")[0]) for out in (first, second)]
    assert sum(counts) == 3 and "of 3 images" in first.stdout  # a.nii.gz, b.nii.gz and the broken file
    assert len(list((cache / "embeddings").rglob("*.npz"))) == 8
    after = _run("precompute", *common)
    assert after.returncode == 0 and "0 encoded, 8 already cached" in after.stdout
    bad = _run("precompute", *common, "--shard", "2/2")
    assert bad.returncode == 2 and "I/N" in bad.stderr


def test_precompute_batches_by_the_encoders_batch_size_unless_told(tmp_path):
    """Default: the encoder's batch size (measured on a GPU, 1 on a CPU); --batch-size wins (predictor double:
    records the batches it is given; its device and batch size are all that differ)."""
    import types

    import torch

    from conftest import ModelsDouble
    from medicosam_app.embeddings.memory_cache import EmbeddingCache
    from medicosam_app.embeddings.precompute import precompute
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.model.predictor import ImageEmbedding

    studies = tmp_path / "studies"
    studies.mkdir()
    image = write_volume(studies / "a.nii.gz", asymmetric_array((20, 16, 11), seed=1))

    def batches_on(device: str, batch_size=None, encoder_batch=None):
        sizes = []

        def encode_batch(images, between_blocks=None):
            sizes.append(len(images))
            return [ImageEmbedding(features=torch.zeros(1, 1, 1, 1), original_size=rgb.shape[:2]) for rgb in images]

        encoder_batch = encoder_batch or (8 if device == "cuda" else 1)
        double = types.SimpleNamespace(device=torch.device(device), encode_batch=encode_batch, encode_batch_size=encoder_batch)
        embedder = SliceEmbedder(ModelsDouble(double), embeddings=EmbeddingCache())
        summary = precompute([image], embedder, batch_size=batch_size, progress=False)
        assert summary.encoded == 11
        return sizes

    assert batches_on("cuda") == [8, 3]
    assert batches_on("cuda", encoder_batch=4) == [4, 4, 3]
    assert batches_on("cpu") == [1] * 11
    assert batches_on("cpu", batch_size=4) == [4, 4, 3]


def test_precompute_encodes_pictures_and_clips_along_their_frames_only(tmp_path, tiny_checkpoint):
    import tifffile
    from PIL import Image

    from projection_files import asymmetric_picture

    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(studies / "a.nii.gz", asymmetric_array((20, 16, 5), seed=1))
    Image.fromarray(asymmetric_picture(24, 30, colour=True)).save(studies / "photo.png")
    tifffile.imwrite(studies / "clip.tif", asymmetric_picture(24, 30, frames=4), imagej=True, metadata={"axes": "TYX"})
    done = _run("precompute", "--studies", str(studies), "--checkpoint", str(tiny_checkpoint), "--cache-dir",
                str(tmp_path / "cache"), "--no-download", "--quiet", "--axis", "0")
    assert done.returncode == 0, done.stderr
    # The volume along i (20); the photograph (1) and the clip (4) along k, their only slices.
    assert "3 images, 25 slices: 25 encoded" in done.stdout


def test_precompute_reads_the_next_image_while_it_encodes_this_one(tmp_path, monkeypatch):
    """The encoder's first batch of the first image waits (up to 10 s) for the second image's read to begin: a
    precompute that read images one after the other would never get there (read and encoder doubles)."""
    import threading
    import types

    import torch

    from conftest import ModelsDouble
    from medicosam_app.embeddings import precompute as precompute_module
    from medicosam_app.embeddings.memory_cache import EmbeddingCache
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.model.predictor import ImageEmbedding

    studies = tmp_path / "studies"
    studies.mkdir()
    first = write_volume(studies / "a.nii.gz", asymmetric_array((20, 16, 3), seed=1))
    second = write_volume(studies / "b.nii.gz", asymmetric_array((18, 14, 2), seed=2))
    reads, second_read = [], threading.Event()
    real_read = precompute_module.read_volume

    def read_double(path):
        reads.append((path.name, threading.current_thread().name))
        if path == second:
            second_read.set()
        return real_read(path)

    encoded = []

    def encode_batch(images, between_blocks=None):
        if not encoded:
            encoded.append(second_read.wait(10))
        else:
            encoded.append(True)
        return [ImageEmbedding(features=torch.zeros(1, 1, 1, 1), original_size=rgb.shape[:2]) for rgb in images]

    monkeypatch.setattr(precompute_module, "read_volume", read_double)
    double = types.SimpleNamespace(device=torch.device("cpu"), encode_batch=encode_batch, encode_batch_size=1)
    summary = precompute_module.precompute([first, second], SliceEmbedder(ModelsDouble(double), embeddings=EmbeddingCache()),
                                           progress=False)
    assert summary.encoded == 5 and summary.images == 2
    assert encoded[0] is True, "the second image was not being read while the first was encoded"
    assert [name for name, _ in reads] == ["a.nii.gz", "b.nii.gz"]
    assert {thread for _, thread in reads} == {"precompute-reader_0"}
