"""Slice embeddings on disk, so a restarted server (or tonight's ``precompute``) never encodes a slice twice.

One ``.npz`` per slice under ``<root>/<encoder>/<preprocessing>/<image hash>/``: every field of the
:class:`EmbeddingKey` is part of the path, so a new checkpoint, precision or preprocessing version simply
misses. Files are written atomically; reading touches the file's mtime, and the oldest files are removed
when the store outgrows its byte budget.

Features that are float16 values (``embedding_storage``, model/storage_choice.py) are written as float16: the
same numbers in half the bytes. With ``background=True`` writes happen on a writer thread, so encoding the next
slices never waits for the disk (``np.savez`` of a 4 MB slice took 15 ms of every 45 ms of a GPU precompute); a
slice waiting to be written is served from the queue, and :meth:`flush` waits for the queue to empty.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import queue
import re
import tempfile
import threading
import time
import weakref
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..model.predictor import ImageEmbedding
from .key import EmbeddingKey

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _segment(text: str) -> str:
    """A path segment made from a key field (they are hashes and short policy names, never user paths)."""
    return _UNSAFE.sub("_", text)[:80] or "_"


class EmbeddingDiskStore:
    """A directory of slice embeddings with a byte budget and least-recently-used eviction."""

    def __init__(self, root: os.PathLike, max_bytes: int = 20 << 30, background: bool = False, queue_size: int = 64) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned_writes()
        self._bytes = sum(path.stat().st_size for path in self._files())
        # Written on the writer thread (background): waiting slices by path, served by load() until written.
        self._waiting: Dict[Path, ImageEmbedding] = {}
        self._queue: Optional["queue.Queue[Tuple[Path, ImageEmbedding]]"] = None
        if background:
            self._queue = queue.Queue(maxsize=queue_size)  # bounded: a full queue makes the encoder wait for the disk
            threading.Thread(target=_write_queued, args=(weakref.ref(self), self._queue), name="embedding-disk-writer",
                             daemon=True).start()
            atexit.register(_flush_at_exit, weakref.ref(self))  # a command that ends (precompute) leaves nothing unwritten

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def waiting_writes(self) -> int:
        with self._lock:
            return len(self._waiting)

    def path_for(self, key: EmbeddingKey) -> Path:
        return (
            self.root
            / _segment(key.encoder)
            / _segment(key.preprocessing)
            / _segment(key.image_hash)
            / f"axis{int(key.axis)}_{_segment(key.orientation)}_{int(key.index):05d}.npz"
        )

    def has(self, key: EmbeddingKey) -> bool:
        """Whether ``key`` is stored (or waiting to be written)."""
        path = self.path_for(key)
        with self._lock:
            if path in self._waiting:
                return True
        return path.is_file()

    def load(self, key: EmbeddingKey) -> Optional[ImageEmbedding]:
        """The stored embedding, or None when absent or unreadable (an unreadable file is removed)."""
        path = self.path_for(key)
        with self._lock:
            waiting = self._waiting.get(path)
        if waiting is not None:
            return waiting
        try:
            with np.load(path, allow_pickle=False) as stored:
                features = torch.from_numpy(np.array(stored["features"])).float()
                original_size = tuple(int(v) for v in stored["original_size"])
            os.utime(path)  # mark as recently used for eviction
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            logger.warning("Discarding unreadable cached embedding %s: %s", path, error)
            self._remove(path)
            return None
        return ImageEmbedding(features=features, original_size=original_size)  # type: ignore[arg-type]

    def save(self, key: EmbeddingKey, embedding: ImageEmbedding) -> None:
        """Write atomically (temporary file + rename), now or on the writer thread; a full disk is logged, never
        raised to the click."""
        path = self.path_for(key)
        if self._queue is None:
            self._write(path, embedding)
            return
        with self._lock:
            self._waiting[path] = embedding
        self._queue.put((path, embedding))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every queued write is on disk (at most ``timeout`` seconds); False if some are still waiting."""
        if self._queue is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._waiting:
                    return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def _written(self, path: Path, embedding: ImageEmbedding) -> None:
        with self._lock:
            if self._waiting.get(path) is embedding:  # not replaced by a newer save meanwhile
                del self._waiting[path]

    def _write(self, path: Path, embedding: ImageEmbedding) -> None:
        features = embedding.features.detach().to("cpu", torch.float32)
        half = features.half()
        stored = half.numpy() if torch.equal(half.float(), features) else features.numpy()  # float16 when lossless
        temporary: Optional[str] = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            packed = io.BytesIO()  # packed in memory: a full disk then fails one write, not numpy's zip writer
            np.savez(packed, features=stored, original_size=np.asarray(embedding.original_size, dtype=np.int64))
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
                temporary = handle.name
                handle.write(packed.getbuffer())
            previous = _size(path)
            os.replace(temporary, path)
            size = _size(path)
        except OSError as error:
            logger.warning("Could not store embedding %s: %s", path, error)
            if temporary:
                self._remove(Path(temporary))
            return
        with self._lock:
            self._bytes += size - previous
            over = self._bytes > self.max_bytes
        if over:
            self.evict()

    def evict(self, target_fraction: float = 0.9) -> None:
        """Remove the least recently used files until the store is under ``target_fraction`` of its budget."""
        with self._lock:
            files = sorted(self._files(), key=_mtime)
            total = sum(_size(p) for p in files)
            target = self.max_bytes * target_fraction
            for path in files:
                if total <= target:
                    break
                total -= _size(path)
                self._remove(path)
            self._bytes = max(total, 0)

    def _remove_abandoned_writes(self, older_than_s: float = 600.0) -> None:
        """Temporary files of writers that were killed mid-save (another process may still be writing
        fresh ones, e.g. ``precompute``: only old ones go)."""
        now = time.time()
        for path in self.root.rglob("*.tmp"):
            if now - _mtime(path) > older_than_s:
                self._remove(path)

    def _files(self):
        return (path for path in self.root.rglob("*.npz") if path.is_file())

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


def _write_queued(store_ref: "weakref.ref[EmbeddingDiskStore]", waiting: "queue.Queue[Tuple[Path, ImageEmbedding]]") -> None:
    """The writer thread: writes what is queued, and ends with its store (held weakly: a dropped store is not kept alive)."""
    while True:
        try:
            path, embedding = waiting.get(timeout=1.0)
        except queue.Empty:
            if store_ref() is None:
                return
            continue
        store = store_ref()
        if store is None:
            return
        try:
            store._write(path, embedding)
        except Exception:  # never let the writer die: the slice is re-encoded on a miss, nothing else is lost
            logger.exception("Could not write embedding %s", path)
        finally:
            store._written(path, embedding)
        del store


def _flush_at_exit(store_ref: "weakref.ref[EmbeddingDiskStore]") -> None:
    store = store_ref()
    if store is not None and not store.flush(timeout=120):
        logger.warning("%d embeddings were not written to %s before the process ended", store.waiting_writes, store.root)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
