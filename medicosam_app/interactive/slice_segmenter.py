"""One click, end to end: volume → slice in display orientation → embedding (cached) → mask → label volume."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from ..embeddings.intensity import IntensityPolicy
from ..embeddings.memory_cache import EmbeddingCache, EmbeddingSource
from ..embeddings.prefetch import Prefetcher
from ..embeddings.slice_embedder import SliceEmbedder
from ..geometry.volume import Volume
from ..geometry.volume_cache import VolumeCache
from ..model.provider import ModelProvider
from .prompts import VoxelPrompts, choose_slice, prompts_within, slice_prompt
from .refinement import RefinementKey, RefinementMemory


@dataclass(frozen=True)
class ClickContext:
    """Who is clicking on what: the refinement memory is kept per (client, image, label, slice).

    A request without ``client_id`` is anonymous and is answered from its prompts alone: two anonymous
    annotators must not refine each other's masks, and there is no way to tell them apart."""

    image_id: str
    client_id: Optional[str] = None
    label: str = "label"
    reset_state: bool = False

    @property
    def remembered(self) -> bool:
        """Whether refinement and propagation state is kept between this client's requests."""
        return self.client_id is not None

    @property
    def prefetch_owner(self) -> str:
        return self.client_id if self.client_id is not None else "(anonymous)"


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
    decoder_version: Optional[str] = None  # the interactive finetuning version that decoded (None: the checkpoint's)

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
        embedder: Optional[SliceEmbedder] = None,
    ) -> None:
        self.models = models
        self.volumes = volumes or VolumeCache()
        self.embedder = embedder or SliceEmbedder(models, intensity, embeddings, prefetcher, prefetch_radius)
        self.refinement = refinement or RefinementMemory()

    @property
    def embeddings(self) -> EmbeddingCache:
        return self.embedder.embeddings

    @property
    def prefetcher(self) -> Optional[Prefetcher]:
        return self.embedder.prefetcher

    def segment(
        self, image_path: os.PathLike, prompts: VoxelPrompts, context: ClickContext, axis: int = 2
    ) -> SliceSegmentation:
        """Segment the slice ``prompts`` point at (its ``slice_index``, else the last point's, else the box's
        middle), viewed along ``axis``.

        Args:
            image_path: the image file (read once, then cached by content).
            prompts: points and box in voxel indices of the image, as the request layer read them.
            context: who clicks on what, for the refinement memory.
            axis: the slicing axis (0 i, 1 j, 2 k).

        Returns:
            A label volume of the image's shape with only the segmented slice filled, and how it was made.
        """
        if self.prefetcher is None:
            return self._segment(image_path, prompts, context, axis)
        with self.prefetcher.hold():  # background encoding pauses at its next block while a click runs
            return self._segment(image_path, prompts, context, axis)

    def _segment(
        self, image_path: os.PathLike, requested: VoxelPrompts, context: ClickContext, axis: int
    ) -> SliceSegmentation:
        started = time.perf_counter()
        predictor = self.models.predictor()
        volume = self.volumes.get(image_path)
        view = volume.view(axis)
        prompts = prompts_within(requested, volume.shape)
        index = choose_slice(prompts, view)
        prompt = slice_prompt(prompts, view, index)
        loaded = time.perf_counter()

        embedding, source = self.embedder.embedding(volume, view, index, predictor)
        self.embedder.prefetch_around(context.prefetch_owner, volume, view, index)
        encoded = time.perf_counter()

        previous = None
        if context.remembered:
            key = RefinementKey(context.client_id, context.image_id, context.label, axis, index)
            if context.reset_state:
                self.refinement.reset(context.client_id, context.image_id, context.label)
            previous = self.refinement.get(key)
        prediction = predictor.predict(
            embedding, prompt.points_xy, prompt.point_labels, prompt.box_xyxy, mask_logits=previous
        )
        if context.remembered:
            self.refinement.put(key, prediction.low_res_logits)
        decoded = time.perf_counter()

        label = np.zeros(volume.shape, dtype=np.uint8, order="F")  # i fastest, as ITK writes it: no transpose copy
        view.paste(prediction.mask.astype(np.uint8), label, index)
        done = time.perf_counter()
        return SliceSegmentation(
            label=label,
            volume=volume,
            axis=axis,
            slice_index=index,
            predicted_iou=prediction.predicted_iou,
            embedding_source=source,
            decoder_version=getattr(predictor, "decoder_version", None),
            latencies={
                "pre": round(loaded - started, 4),
                "encode": round(encoded - loaded, 4),
                "decode": round(decoded - encoded, 4),
                "post": round(done - decoded, 4),
            },
        )
