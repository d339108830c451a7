"""The instance modes end to end on a volume, on the same cached embeddings the interactive tasks use."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import InvalidRequestError
from ..geometry.coordinates import SliceView
from ..geometry.volume import Volume
from ..geometry.volume_cache import VolumeCache
from ..interactive.propagation_settings import PropagationSettings
from ..interactive.volume_segmenter import slice_segmenter
from ..model.provider import ModelProvider
from ..semantic.segmenter import SemanticResult, SemanticSegmenter
from .drawing import InstanceDrawer
from .instance_label import DrawnInstance, InstanceLabel, compose
from .mask_generator import GridSettings, PredictorPointDecoder, generate, grid_size_note
from .proposals import Proposal, RequestedBox, box_proposals, semantic_proposals

logger = logging.getLogger(__name__)

MODES = ("semantic", "everything", "boxes")


@dataclass(frozen=True)
class InstanceOptions:
    """What one request asks for, read by the request layer (:mod:`medicosam_app.api`); every value is checked before
    any work starts, except what only the image can tell (boxes inside it, the slice on its axis)."""

    mode: str = "semantic"
    axis: int = 2
    slice_index: Optional[int] = None  # ``everything``: the slice (default: the middle one)
    boxes: Tuple[RequestedBox, ...] = ()  # ``boxes``: checked against the image when it is loaded
    box_class: str = "object"
    grid: GridSettings = GridSettings()
    drawing: PropagationSettings = PropagationSettings()
    min_voxels: int = 10  # ``semantic``: smaller components are not proposed
    max_instances: int = 100  # ``semantic``: the best-scoring components are drawn, the rest reported


@dataclass
class InstanceResult:
    instances: InstanceLabel
    volume: Volume
    options: InstanceOptions
    semantic_version: Optional[str] = None
    details: Dict[str, Any] = field(default_factory=dict)
    latencies: Dict[str, float] = field(default_factory=dict)
    decoder_version: Optional[str] = None  # the interactive finetuning version that drew (None: the checkpoint's)


@dataclass
class RefinedSemantic:
    """``medicosam_semantic`` with ``refine``: the semantic label with each component redrawn by MedicoSAM."""

    semantic: SemanticResult
    label: np.ndarray
    redrawn_slices: int  # component slices MedicoSAM drew
    kept_slices: int  # component slices where drawing stopped, left as the semantic decoder had them
    decoder_version: Optional[str] = None  # the interactive finetuning version that drew (None: the checkpoint's)


class InstanceSegmenter:
    """Instances by grid prompts, semantic proposals or given boxes, drawn by MedicoSAM's mask decoder."""

    def __init__(
        self, models: ModelProvider, embedder: SliceEmbedder, semantic: SemanticSegmenter, volumes: Optional[VolumeCache] = None
    ) -> None:
        self.models = models
        self.embedder = embedder
        self.semantic = semantic
        self.volumes = volumes or VolumeCache()

    def segment(self, image_path: os.PathLike, options: InstanceOptions) -> InstanceResult:
        started = time.perf_counter()
        if options.mode == "semantic":
            self.semantic.served()  # 409 before any image is read when no semantic model exists
        predictor = self.models.predictor()
        volume = self.volumes.get(image_path)
        view = volume.view(options.axis)
        with self._hold_prefetch():
            if options.mode == "everything":
                result = self._everything(volume, view, options, predictor)
            elif options.mode == "boxes":
                proposals = box_proposals(options.boxes, volume.shape, view, options.box_class)
                result = self._draw(volume, view, options, predictor, proposals)
            else:
                semantic = self.semantic.segment(str(image_path), with_confidence=True)
                proposals = semantic_proposals(
                    semantic.label, semantic.classes.names, semantic.classes.values, view, semantic.confidence, options.min_voxels
                )
                result = self._draw(volume, view, options, predictor, proposals[: options.max_instances])
                result.semantic_version = semantic.version
                result.details["proposed"] = len(proposals)
                result.details["not_drawn_beyond_max_instances"] = max(0, len(proposals) - options.max_instances)
                result.latencies["semantic"] = semantic.latencies.get("segment", 0.0)
        result.latencies["total"] = round(time.perf_counter() - started, 4)
        result.decoder_version = getattr(predictor, "decoder_version", None)
        return result

    def refine_semantic(self, image_path: os.PathLike, drawing: PropagationSettings = PropagationSettings(), min_voxels: int = 10) -> RefinedSemantic:
        """The semantic label, each class component redrawn by MedicoSAM where it holds to the stop rules."""
        semantic = self.semantic.segment(str(image_path))  # every component is redrawn: no scores needed
        volume = semantic.volume
        view = volume.configured_view(semantic.axis)
        proposals = semantic_proposals(semantic.label, semantic.classes.names, semantic.classes.values, view, None, min_voxels)
        predictor = self.models.predictor()
        refined = semantic.label.copy()
        redrawn = kept = 0
        with self._hold_prefetch():
            drawer = InstanceDrawer(slice_segmenter(self.embedder, predictor, volume, view, {}), view.pixel_shape, drawing)
            for proposal in proposals:
                instance = drawer.draw(proposal)
                drawn = instance.masks if instance is not None else {}
                for index, seed in proposal.seed_masks.items():
                    if index not in drawn:
                        kept += 1
                        continue
                    pixels = view.extract(refined, index)
                    pixels[seed] = 0  # the component's semantic voxels on this slice give way to MedicoSAM's mask
                    pixels[drawn[index] & (pixels == 0)] = proposal.class_value  # never over another structure
                    redrawn += 1
        return RefinedSemantic(semantic, refined, redrawn, kept, getattr(predictor, "decoder_version", None))

    def _everything(self, volume: Volume, view: SliceView, options: InstanceOptions, predictor: Any) -> InstanceResult:
        index = view.num_slices // 2 if options.slice_index is None else options.slice_index
        if not 0 <= index < view.num_slices:
            raise InvalidRequestError(
                f"'slice' {index} is outside the image: slices along axis {'ijk'[view.axis]} run 0..{view.num_slices - 1}."
            )
        t0 = time.perf_counter()
        embedding, source = self.embedder.embedding(volume, view, index, predictor)
        t1 = time.perf_counter()
        display = self.embedder.display_slice(volume, view, index)
        settings = options.grid
        if settings.points_per_batch is None:
            settings = dataclasses.replace(settings, points_per_batch=64 if predictor.device.type == "cuda" else 4)
        grid = generate(PredictorPointDecoder(predictor, embedding), view.pixel_shape, settings, display)
        t2 = time.perf_counter()
        logger.info("everything on slice %d: %s → %s in %.2f s", index, grid_size_note(settings), grid.stats(), t2 - t1)
        instances = [
            DrawnInstance("object", 0, {index: o.mask}, o.predicted_iou, o.predicted_iou, o.stability) for o in grid.objects
        ]
        composed = compose(instances, volume.shape, view)
        return InstanceResult(
            composed, volume, options, details={"slice": index, "embedding_source": source, **grid.stats()},
            latencies={"encode": round(t1 - t0, 4), "decode": round(t2 - t1, 4), "compose": round(time.perf_counter() - t2, 4)},
        )

    def _draw(self, volume: Volume, view: SliceView, options: InstanceOptions, predictor: Any, proposals: List[Proposal]) -> InstanceResult:
        timings: Dict[str, float] = {}
        drawer = InstanceDrawer(slice_segmenter(self.embedder, predictor, volume, view, timings), view.pixel_shape, options.drawing)
        instances: List[DrawnInstance] = []
        empty = 0
        for number, proposal in enumerate(proposals, start=1):
            instance = drawer.draw(proposal)
            if instance is None:
                empty += 1
            else:
                instances.append(instance)
            if number % 10 == 0 or number == len(proposals):
                logger.info("Instances: %d of %d proposals drawn", number, len(proposals))
        t0 = time.perf_counter()
        composed = compose(instances, volume.shape, view)
        return InstanceResult(
            composed, volume, options, details={"proposals_without_mask": empty},
            latencies={k: round(v, 4) for k, v in timings.items()} | {"compose": round(time.perf_counter() - t0, 4)},
        )

    def _hold_prefetch(self):
        prefetcher = self.embedder.prefetcher
        return prefetcher.hold() if prefetcher is not None else contextlib.nullcontext()
