"""Slice embeddings of whole volumes: the one place that turns (volume, axis, slice) into encoder features.

Used by clicks, by the prefetch worker, by ``precompute`` and by anything else that needs embeddings,
so they all share one cache and one key.
"""

from __future__ import annotations

import weakref
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..geometry.coordinates import SliceView
from ..geometry.volume import Volume
from ..lru import LRUCache
from ..model.predictor import ImageEmbedding, PromptPredictor
from ..model.provider import ModelProvider
from .intensity import IntensityPolicy, slice_to_rgb
from .memory_cache import EmbeddingCache, EmbeddingKey, EmbeddingSource
from .prefetch import Prefetcher, PrefetchPlan, outward_order


class SliceEmbedder:
    """Embeddings of display-orientation slices, cached in memory and on disk, prefetched around clicks."""

    def __init__(
        self,
        models: ModelProvider,
        intensity: IntensityPolicy = IntensityPolicy(),
        embeddings: Optional[EmbeddingCache] = None,
        prefetcher: Optional[Prefetcher] = None,
        prefetch_radius: int = 16,
        predictor_source: Optional[Callable[[], PromptPredictor]] = None,
    ) -> None:
        self.models = models
        self.intensity = intensity
        self.embeddings = embeddings or EmbeddingCache()
        self.prefetcher = prefetcher
        self.prefetch_radius = int(prefetch_radius)
        # Whose encoder embeds: the served model's by default (a finetuned interactive version may bring
        # its own encoder), or a fixed one (see :meth:`using`).
        self._predictor_source = predictor_source or models.predictor
        # One intensity range per volume (a percentile over millions of voxels is worth keeping).
        self._ranges: LRUCache[Optional[Tuple[float, float]]] = LRUCache(max_bytes=1024, size_of=lambda _: 1)

    def using(self, predictor: PromptPredictor) -> "SliceEmbedder":
        """This embedder with ``predictor``'s encoder: same caches, prefetcher and intensity policy; its
        embeddings are keyed by that encoder, so they are shared exactly when the encoder is the same."""
        return self._sibling(lambda: predictor)

    def using_checkpoint_encoder(self) -> "SliceEmbedder":
        """This embedder with the checkpoint's own encoder, whatever interactive version is served: the
        semantic decoder learned on its features."""
        return self._sibling(self.models.base_predictor)

    def _sibling(self, source: Callable[[], PromptPredictor]) -> "SliceEmbedder":
        sibling = SliceEmbedder(self.models, self.intensity, self.embeddings, self.prefetcher, self.prefetch_radius, source)
        sibling._ranges = self._ranges
        return sibling

    def predictor(self) -> PromptPredictor:
        """The predictor whose encoder embeds (and whose decoder the interactive tasks use)."""
        return self._predictor_source()

    def batch_size(self, predictor: Optional[PromptPredictor] = None) -> int:
        """Slices per encoder pass where many are embedded: the encoder's own (measured on a GPU, 1 on a CPU, or
        the configured ``encode_batch_size``; see model/batch_choice.py)."""
        return max(1, int(getattr(predictor or self.predictor(), "encode_batch_size", 1)))

    def key(self, volume: Volume, view: SliceView, index: int, predictor: Optional[PromptPredictor] = None) -> EmbeddingKey:
        encoder_key = self.models.encoder_key_for(predictor or self.predictor())
        return EmbeddingKey(volume.content_hash, view.axis, index, self.intensity.key, encoder_key, view.orientation)

    def is_ready(self, volume: Volume, view: SliceView, index: int, predictor: Optional[PromptPredictor] = None) -> bool:
        """Whether the slice's embedding (by ``predictor``'s encoder, default this embedder's) is cached, in memory or on disk."""
        return self.embeddings.contains(self.key(volume, view, index, predictor))

    def embedding(
        self, volume: Volume, view: SliceView, index: int, predictor: Optional[PromptPredictor] = None
    ) -> Tuple[ImageEmbedding, EmbeddingSource]:
        """The embedding of one slice, from the caches or encoded now, ahead of any prefetch work.

        If the prefetch worker is encoding this slice right now, the caller waits for that encode (which
        then runs without pausing) instead of encoding it twice. ``predictor``: the one the caller decodes
        with (default this embedder's), so features and decoder match even if a version is promoted meanwhile.
        """
        predictor = predictor or self.predictor()  # one encoder for key and features
        key = self.key(volume, view, index, predictor)
        if self.prefetcher is None:
            return self.embeddings.get_or_encode(key, lambda: self.encode(volume, view, [index], predictor)[0])
        prefetcher = self.prefetcher

        def encode_ahead_of_prefetch() -> ImageEmbedding:
            with prefetcher.hold():
                return self.encode(volume, view, [index], predictor)[0]

        return self.embeddings.get_or_encode(key, encode_ahead_of_prefetch, prefetcher.while_waiting_for)

    def prefetch_around(self, client_id: str, volume: Volume, view: SliceView, index: int) -> None:
        """Queue this client's neighbouring slices, nearest first, replacing its previous plan."""
        if self.prefetcher is None or self.prefetch_radius <= 0:
            return
        # The plan holds the volume weakly: queued work must not keep a volume alive that the volume
        # cache has let go (many clients on many images would pin them all outside its budget).
        volume_ref = weakref.ref(volume)

        def encode(indices: Sequence[int]) -> None:
            alive = volume_ref()
            if alive is not None:
                self.encode_into_cache(alive, view, indices)

        def is_ready(i: int) -> bool:
            alive = volume_ref()
            return alive is None or self.is_ready(alive, view, i)  # a dropped volume has nothing left to do

        plan = PrefetchPlan(
            target=f"{volume.content_hash}:axis{view.axis}",
            slices=outward_order(index, view.num_slices, self.prefetch_radius),
            encode=encode,
            is_ready=is_ready,
            batch_size=self.batch_size(),
        )
        self.prefetcher.focus(client_id, plan)

    def encode_into_cache(
        self, volume: Volume, view: SliceView, indices: Sequence[int], predictor: Optional[PromptPredictor] = None
    ) -> int:
        """Encode the given slices that are not cached yet, in one batch, and cache them; returns how many.
        ``predictor``: whose encoder (default this embedder's)."""
        predictor = predictor or self.predictor()
        keys = {index: self.key(volume, view, index, predictor) for index in indices}
        missing = [index for index in indices if not self.embeddings.contains(keys[index])]
        if len(missing) == 1:  # one slice: the deduplicating path, in case a click wants it right now
            self.embeddings.get_or_encode(keys[missing[0]], lambda: self.encode(volume, view, missing, predictor)[0])
        elif missing:
            for index, embedding in zip(missing, self.encode(volume, view, missing, predictor)):
                self.embeddings.put(keys[index], embedding)
        return len(missing)

    def encode(
        self, volume: Volume, view: SliceView, indices: Sequence[int], predictor: Optional[PromptPredictor] = None
    ) -> List[ImageEmbedding]:
        """Encode slices now, without the cache; prefetch work pauses between blocks while a click encodes."""
        images = [self.slice_rgb(volume, view, index) for index in indices]
        pause = None
        if self.prefetcher is not None and self.prefetcher.in_worker():
            pause = self.prefetcher.pause_while_held
        return (predictor or self.predictor()).encode_batch(images, between_blocks=pause)

    def slice_rgb(self, volume: Volume, view: SliceView, index: int) -> np.ndarray:
        """The slice as the encoder receives it: H×W×3 uint8 after the intensity policy."""
        return slice_to_rgb(view.extract(volume.array, index), self._volume_range(volume))

    def display_slice(self, volume: Volume, view: SliceView, index: int) -> np.ndarray:
        """The slice as the encoder sees it, as one H×W uint8 brightness (the mean of the channels for colour)."""
        rgb = self.slice_rgb(volume, view, index)
        return rgb[:, :, 0] if not volume.is_colour else np.round(rgb.mean(axis=2)).astype(np.uint8)

    def _volume_range(self, volume: Volume) -> Optional[Tuple[float, float]]:
        key = (volume.content_hash, self.intensity.key)
        return self._ranges.get_or_compute(key, lambda: self.intensity.volume_range(volume.array))[0]
