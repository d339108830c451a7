"""One click, end to end: volume → slice in display orientation → embedding (cached) → mask → label volume."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .coordinates import SliceView
from .embeddings import EmbeddingCache, EmbeddingKey, EmbeddingSource
from .intensity import IntensityPolicy, slice_to_rgb
from .lru import LRUCache
from .model_provider import ModelProvider
from .prefetch import Prefetcher, PrefetchPlan, outward_order
from .predictor import ImageEmbedding
from .prompts import choose_slice, parse_voxel_prompts, slice_prompt
from .refinement import RefinementKey, RefinementMemory
from .volume import Volume
from .volume_cache import VolumeCache


@dataclass(frozen=True)
class ClickContext:
    """Who is clicking on what: the refinement memory is kept per (client, image, label, slice)."""

    image_id: str
    client_id: str = "default"
    label: str = "label"
    reset_state: bool = False


@dataclass
class SliceSegmentation:
    """The answer to one click: a label volume with only the prompted slice filled."""

    label: np.ndarray
    volume: Volume
    axis: int
    slice_index: int
    predicted_iou: float
    embedding_source: EmbeddingSource
    latencies: Dict[str, float] = field(default_factory=dict)

    @property
    def embedding_cached(self) -> bool:
        return self.embedding_source != "encoded"


class InteractiveSegmenter:
    """Segments one slice per request from point and box prompts, refining with the previous logits."""

    def __init__(
        self,
        models: ModelProvider,
        intensity: IntensityPolicy = IntensityPolicy(),
        volumes: Optional[VolumeCache] = None,
        embeddings: Optional[EmbeddingCache] = None,
        refinement: Optional[RefinementMemory] = None,
        prefetcher: Optional[Prefetcher] = None,
        prefetch_radius: int = 16,
    ) -> None:
        self.models = models
        self.intensity = intensity
        self.volumes = volumes or VolumeCache()
        self.embeddings = embeddings or EmbeddingCache()
        self.refinement = refinement or RefinementMemory()
        self.prefetcher = prefetcher
        self.prefetch_radius = int(prefetch_radius)
        # One intensity range per volume (a percentile over millions of voxels is worth keeping).
        self._ranges: LRUCache[Optional[Tuple[float, float]]] = LRUCache(max_bytes=1024, size_of=lambda _: 1)

    def segment(
        self, image_path: os.PathLike, params: Mapping[str, Any], context: ClickContext, axis: int = 2
    ) -> SliceSegmentation:
        """Segment the slice the prompts in ``params`` (Slicer/OHIF keys) point at."""
        started = time.perf_counter()
        predictor = self.models.predictor()
        volume = self.volumes.get(image_path)
        view = SliceView.create(volume.shape, volume.direction, axis)
        prompts = parse_voxel_prompts(params, volume.shape)
        index = choose_slice(prompts, view)
        prompt = slice_prompt(prompts, view, index)
        loaded = time.perf_counter()

        embedding, source = self.embedding(volume, view, index)
        self.prefetch_around(context.client_id, volume, view, index)
        encoded = time.perf_counter()

        key = RefinementKey(context.client_id, context.image_id, context.label, axis, index)
        if context.reset_state:
            self.refinement.reset(context.client_id, context.image_id, context.label)
        previous = self.refinement.get(key)
        prediction = predictor.predict(
            embedding, prompt.points_xy, prompt.point_labels, prompt.box_xyxy, mask_logits=previous
        )
        self.refinement.put(key, prediction.low_res_logits)
        decoded = time.perf_counter()

        label = np.zeros(volume.shape, dtype=np.uint8)
        view.paste(prediction.mask.astype(np.uint8), label, index)
        done = time.perf_counter()
        return SliceSegmentation(
            label=label,
            volume=volume,
            axis=axis,
            slice_index=index,
            predicted_iou=prediction.predicted_iou,
            embedding_source=source,
            latencies={
                "pre": round(loaded - started, 4),
                "encode": round(encoded - loaded, 4),
                "decode": round(decoded - encoded, 4),
                "post": round(done - decoded, 4),
            },
        )

    def embedding(self, volume: Volume, view: SliceView, index: int) -> Tuple[ImageEmbedding, EmbeddingSource]:
        """The embedding of one slice, from the caches or encoded now, ahead of any prefetch work."""
        key = self._key(volume, view, index)
        encode = lambda: self._encode_slices(volume, view, [index])[0]  # noqa: E731
        if self.prefetcher is None or self.embeddings.contains(key):
            return self.embeddings.get_or_encode(key, encode)
        with self.prefetcher.hold():
            return self.embeddings.get_or_encode(key, encode)

    def prefetch_around(self, client_id: str, volume: Volume, view: SliceView, index: int) -> None:
        """Queue this client's neighbouring slices, nearest first, replacing its previous plan."""
        if self.prefetcher is None or self.prefetch_radius <= 0:
            return
        plan = PrefetchPlan(
            target=f"{volume.content_hash}:axis{view.axis}",
            slices=outward_order(index, view.num_slices, self.prefetch_radius),
            encode=lambda indices: self.encode_into_cache(volume, view, indices),
            is_ready=lambda i: self.embeddings.contains(self._key(volume, view, i)),
        )
        self.prefetcher.focus(client_id, plan)

    def encode_into_cache(self, volume: Volume, view: SliceView, indices: Sequence[int]) -> int:
        """Encode the slices not cached yet (in batches of the given size) and cache them; returns how many."""
        keys = {index: self._key(volume, view, index) for index in indices}
        missing = [index for index in indices if not self.embeddings.contains(keys[index])]
        if len(missing) == 1:  # one slice: the deduplicating path, in case a click wants it right now
            self.embeddings.get_or_encode(keys[missing[0]], lambda: self._encode_slices(volume, view, missing)[0])
        elif missing:
            for index, embedding in zip(missing, self._encode_slices(volume, view, missing)):
                self.embeddings.put(keys[index], embedding)
        return len(missing)

    def _key(self, volume: Volume, view: SliceView, index: int) -> EmbeddingKey:
        return EmbeddingKey(volume.content_hash, view.axis, index, self.intensity.key, self.models.encoder_key)

    def _encode_slices(self, volume: Volume, view: SliceView, indices: Sequence[int]) -> List[ImageEmbedding]:
        volume_range = self._volume_range(volume)
        images = [slice_to_rgb(view.extract(volume.array, index), volume_range) for index in indices]
        return self.models.predictor().encode_batch(images)

    def _volume_range(self, volume: Volume) -> Optional[Tuple[float, float]]:
        key = (volume.content_hash, self.intensity.key)
        return self._ranges.get_or_compute(key, lambda: self.intensity.volume_range(volume.array))[0]
