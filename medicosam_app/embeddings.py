"""The embedding cache: each slice is encoded once per image content, preprocessing and checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

from .lru import LRUCache
from .predictor import ImageEmbedding


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything that changes the encoder's output for one slice."""

    image_hash: str
    axis: int
    index: int
    preprocessing: str
    checkpoint_hash: str


class EmbeddingCache:
    """In-memory LRU of slice embeddings under a byte budget, shared by all clients."""

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self._cache: LRUCache[ImageEmbedding] = LRUCache(max_bytes, size_of=lambda e: e.nbytes)

    def get_or_encode(self, key: EmbeddingKey, encode: Callable[[], ImageEmbedding]) -> Tuple[ImageEmbedding, bool]:
        """The cached embedding for ``key`` or a fresh one from ``encode``; the flag tells which."""
        return self._cache.get_or_compute(key, encode)

    @property
    def stats(self) -> dict:
        return {
            "entries": len(self._cache),
            "bytes": self._cache.nbytes,
            "max_bytes": self._cache.max_bytes,
            "hits": self._cache.hits,
            "misses": self._cache.misses,
        }
