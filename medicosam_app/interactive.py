"""One click, end to end: volume → slice in display orientation → embedding (cached) → mask → label volume."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .coordinates import SliceView
from .embeddings import EmbeddingCache, EmbeddingKey
from .intensity import IntensityPolicy, slice_to_rgb
from .lru import LRUCache
from .model_provider import ModelProvider
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
    embedding_cached: bool
    latencies: Dict[str, float] = field(default_factory=dict)


class InteractiveSegmenter:
    """Segments one slice per request from point and box prompts, refining with the previous logits."""

    def __init__(
        self,
        models: ModelProvider,
        intensity: IntensityPolicy = IntensityPolicy(),
        volumes: Optional[VolumeCache] = None,
        embeddings: Optional[EmbeddingCache] = None,
        refinement: Optional[RefinementMemory] = None,
    ) -> None:
        self.models = models
        self.intensity = intensity
        self.volumes = volumes or VolumeCache()
        self.embeddings = embeddings or EmbeddingCache()
        self.refinement = refinement or RefinementMemory()
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

        embedding, cached = self.embedding(volume, view, index)
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
            embedding_cached=cached,
            latencies={
                "pre": round(loaded - started, 4),
                "encode": round(encoded - loaded, 4),
                "decode": round(decoded - encoded, 4),
                "post": round(done - decoded, 4),
            },
        )

    def embedding(self, volume: Volume, view: SliceView, index: int) -> Tuple[ImageEmbedding, bool]:
        """The embedding of one slice, from the cache or encoded now."""
        predictor = self.models.predictor()
        key = EmbeddingKey(volume.content_hash, view.axis, index, self.intensity.key, self.models.checkpoint_hash)

        def encode() -> ImageEmbedding:
            rgb = slice_to_rgb(view.extract(volume.array, index), self._volume_range(volume))
            return predictor.encode(rgb)

        return self.embeddings.get_or_encode(key, encode)

    def _volume_range(self, volume: Volume) -> Optional[Tuple[float, float]]:
        key = (volume.content_hash, self.intensity.key)
        return self._ranges.get_or_compute(key, lambda: self.intensity.volume_range(volume.array))[0]
