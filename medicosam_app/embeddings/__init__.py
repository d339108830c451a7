"""Slice embeddings: the slice → RGB preprocessing, their cache key, the memory and disk caches, the embedder
that fills them, the background prefetch and the overnight precompute."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

from .key import EmbeddingKey
from .prefetch import Prefetcher, PrefetchPlan, outward_order

if TYPE_CHECKING:
    from .disk_store import EmbeddingDiskStore
    from .intensity import IntensityPolicy, rescale_to_uint8, slice_to_rgb
    from .memory_cache import EmbeddingCache, EmbeddingSource
    from .precompute import VOLUME_SUFFIXES, Shard, find_images
    from .slice_embedder import SliceEmbedder

__all__ = [
    "VOLUME_SUFFIXES",
    "EmbeddingCache",
    "EmbeddingDiskStore",
    "EmbeddingKey",
    "EmbeddingSource",
    "IntensityPolicy",
    "PrefetchPlan",
    "Prefetcher",
    "Shard",
    "SliceEmbedder",
    "find_images",
    "outward_order",
    "rescale_to_uint8",
    "slice_to_rgb",
]

# Imported on first use (PEP 562), not here: the caches, the embedder and the precompute import torch and
# segment_anything, and the intensity module numpy, which :mod:`.key` and :mod:`.prefetch` do without.
# Left out: the function ``precompute.precompute``, whose name is its module's (``embeddings.precompute``).
_LAZY = {
    "EmbeddingDiskStore": ".disk_store",
    "IntensityPolicy": ".intensity",
    "rescale_to_uint8": ".intensity",
    "slice_to_rgb": ".intensity",
    "EmbeddingCache": ".memory_cache",
    "EmbeddingSource": ".memory_cache",
    "VOLUME_SUFFIXES": ".precompute",
    "Shard": ".precompute",
    "find_images": ".precompute",
    "SliceEmbedder": ".slice_embedder",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
