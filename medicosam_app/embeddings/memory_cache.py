"""The embedding cache: each slice is encoded once per image content, preprocessing and encoder.

Two levels: a byte-bounded LRU in memory, shared by all clients, and optionally an
:class:`EmbeddingDiskStore` that survives restarts and is filled by ``precompute``.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional, Tuple

from ..lru import LRUCache, WhileWaiting
from ..model.predictor import ImageEmbedding
from .disk_store import EmbeddingDiskStore
from .key import EmbeddingKey

__all__ = ["EmbeddingCache", "EmbeddingKey", "EmbeddingSource"]

EmbeddingSource = Literal["memory", "disk", "encoded"]


class EmbeddingCache:
    """Memory first, then disk, then ``encode``; concurrent requests for one key encode it once."""

    def __init__(self, max_bytes: int = 2 << 30, disk: Optional[EmbeddingDiskStore] = None) -> None:
        self._cache: LRUCache[Tuple[ImageEmbedding, EmbeddingSource]] = LRUCache(
            max_bytes, size_of=lambda item: item[0].nbytes
        )
        self.disk = disk
        self.disk_hits = 0

    def get_or_encode(
        self, key: EmbeddingKey, encode: Callable[[], ImageEmbedding], while_waiting: Optional[WhileWaiting] = None
    ) -> Tuple[ImageEmbedding, EmbeddingSource]:
        """The embedding for ``key`` and where it came from; ``while_waiting`` as in :meth:`LRUCache.get_or_compute`."""

        def load_or_encode() -> Tuple[ImageEmbedding, EmbeddingSource]:
            stored = self.disk.load(key) if self.disk is not None else None
            if stored is not None:
                self.disk_hits += 1
                return stored, "disk"
            embedding = encode()
            if self.disk is not None:
                self.disk.save(key, embedding)
            return embedding, "encoded"

        (embedding, source), cached = self._cache.get_or_compute(key, load_or_encode, while_waiting)
        return embedding, "memory" if cached else source

    def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> None:
        """Store a freshly encoded embedding in memory and on disk."""
        self._cache.put(key, (embedding, "encoded"))
        if self.disk is not None:
            self.disk.save(key, embedding)

    def contains(self, key: EmbeddingKey) -> bool:
        """Whether ``key`` is ready without encoding (in memory or on disk)."""
        if self._cache.peek(key) is not None:
            return True
        return self.disk is not None and self.disk.has(key)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait for the disk store's queued writes (see :meth:`EmbeddingDiskStore.flush`)."""
        return self.disk.flush(timeout) if self.disk is not None else True

    @property
    def stats(self) -> dict:
        stats = {
            "entries": len(self._cache),
            "bytes": self._cache.nbytes,
            "max_bytes": self._cache.max_bytes,
            "hits": self._cache.hits,
            "misses": self._cache.misses,
            "disk_hits": self.disk_hits,
        }
        if self.disk is not None:
            stats["disk"] = {"root": str(self.disk.root), "bytes": self.disk.nbytes, "max_bytes": self.disk.max_bytes,
                             "waiting_writes": self.disk.waiting_writes}
        return stats
