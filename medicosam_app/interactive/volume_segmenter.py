"""One request → a 3D mask: prompts on one or more slices, propagated through the volume.

Slicer and OHIF prompts (voxel points, a 3D ``roi``) become per-slice SAM prompts; :class:`Propagator`
walks the slices; the masks are pasted into a label volume in the image's exact geometry. The state of
the last run is kept per (client, image, label, axis) so a correction recomputes only what it changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..embeddings.slice_embedder import SliceEmbedder
from ..geometry.coordinates import SliceView
from ..errors import InvalidRequestError
from ..geometry.volume import Volume
from ..geometry.volume_cache import VolumeCache
from ..lru import LRUCache
from ..model.provider import ModelProvider
from .prompts import SlicePrompt, VoxelPrompts, background_points, prompts_within, slice_prompt
from .propagation import PropagationResult, PropagationState, Propagator, SegmentSlice, SliceMask
from .propagation_settings import PropagationSettings
from .read_ahead import ReadAhead
from .slice_segmenter import ClickContext


@dataclass
class VolumeSegmentation:
    label: np.ndarray
    volume: Volume
    axis: int
    result: PropagationResult
    latencies: Dict[str, float] = field(default_factory=dict)
    decoder_version: Optional[str] = None  # the interactive finetuning version that decoded (None: the checkpoint's)


class PropagationMemory:
    """The last propagation per (client, image, label, axis, settings), for corrections.

    Bounded in bytes, not entries: one state holds a mask and SAM's 256² logits for every slice it
    reached (~0.3 MB a slice), so a few long propagations weigh more than many short ones.
    """

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self._states: LRUCache[PropagationState] = LRUCache(max_bytes, size_of=lambda state: state.nbytes)

    def get(self, key: Tuple) -> Optional[PropagationState]:
        return self._states.get(key)

    def put(self, key: Tuple, state: PropagationState) -> None:
        self._states.put(key, state)

    def reset(self, client_id: str, image_id: str, label: str) -> None:
        self._states.discard_where(lambda key: key[:3] == (client_id, image_id, label))

    @property
    def nbytes(self) -> int:
        return self._states.nbytes


def prompted_slices(prompts: VoxelPrompts, view: SliceView) -> Tuple[Dict[int, SlicePrompt], Dict[int, SlicePrompt]]:
    """The anchors — every slice with a foreground point, plus the ROI's middle slice, with its SAM prompt —
    and the corrections: slices with background points only, each with those points.

    A correction says "not here" on a slice the propagation reaches (removing a leak there); on its own it
    prompts nothing, so a request made only of background points is still refused.
    """
    anchors = {view.slice_of(p) for p in prompts.foreground}
    if prompts.roi is not None:
        low, high = prompts.roi[view.axis]
        anchors.add((low + high) // 2)
    corrections = {view.slice_of(p) for p in prompts.background} - anchors
    if not anchors:
        return {index: slice_prompt(prompts, view, index) for index in sorted(corrections)}, {}  # refused there
    return (
        {index: slice_prompt(prompts, view, index) for index in sorted(anchors)},
        {index: background_points(prompts, view, index) for index in sorted(corrections)},
    )


def propagation_bounds(prompts: VoxelPrompts, view: SliceView) -> Tuple[int, int]:
    """A 3D ROI bounds the walk; a flat one (one slice or frame thick: a box drawn on one frame of a clip) is a
    2D box on that slice, followed both ways as far as the stop rule lets it go."""
    if prompts.roi is not None and prompts.roi[view.axis][0] != prompts.roi[view.axis][1]:
        return prompts.roi[view.axis]
    return 0, view.num_slices - 1


def capped_bounds(bounds: Tuple[int, int], prompted: Sequence[int], max_slices: int) -> Tuple[int, int]:
    """``bounds`` narrowed to at most ``max_slices`` slices (0: no cap) around the prompted ones, centred on them
    as far as the bounds allow. Prompts spread over more slices than the cap are a 413 that names the limit."""
    low, high = bounds
    if max_slices <= 0 or high - low + 1 <= max_slices:
        return bounds
    first, last = min(prompted), max(prompted)
    if last - first + 1 > max_slices:
        raise InvalidRequestError(
            f"The prompts lie on slices {first}..{last} ({last - first + 1} slices); this server propagates over at "
            f"most {max_slices} slices per request (--conf max_propagation_slices). Prompt fewer slices at once.",
            status=413)
    spare = max_slices - (last - first + 1)
    start = max(low, first - spare // 2)
    start = min(start, high - max_slices + 1)
    return start, start + max_slices - 1


def slice_segmenter(
    embedder: SliceEmbedder, predictor: Any, volume: Volume, view: SliceView, timings: Dict[str, float],
    read_ahead: Optional[ReadAhead] = None,
) -> SegmentSlice:
    """The per-slice step of propagation: the slice's cached embedding (a miss encodes the walk's next slices in
    one batch with ``read_ahead``), decoded with one prompt (and the previous slice's logits). Adds the seconds
    spent to ``timings["encode"]`` and ``timings["decode"]``."""

    def segment(index: int, prompt: SlicePrompt, logits: Optional[torch.Tensor]) -> SliceMask:
        t0 = time.perf_counter()
        if read_ahead is not None:
            read_ahead.before_decoding(index)
        embedding, _ = embedder.embedding(volume, view, index, predictor)
        t1 = time.perf_counter()
        answer = predictor.predict(embedding, prompt.points_xy, prompt.point_labels, prompt.box_xyxy, mask_logits=logits)
        timings["encode"] = timings.get("encode", 0.0) + t1 - t0
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t1
        return SliceMask(answer.mask, answer.low_res_logits, answer.predicted_iou)

    return segment


class VolumeSegmenter:
    """3D masks from 2D MedicoSAM by propagation, sharing the click path's volume and embedding caches."""

    def __init__(
        self,
        models: ModelProvider,
        embedder: SliceEmbedder,
        volumes: Optional[VolumeCache] = None,
        memory: Optional[PropagationMemory] = None,
        max_slices: int = 0,
        overlap_read_ahead: Optional[bool] = None,
    ) -> None:
        self.models = models
        self.overlap_read_ahead = overlap_read_ahead  # None: on a GPU (see read_ahead.py)
        self.max_slices = max_slices  # the most slices one request may walk (0: the whole axis)
        self.embedder = embedder
        self.volumes = volumes or VolumeCache()
        self.memory = memory or PropagationMemory()

    def read_ahead(self, volume: Volume, view: SliceView, bounds: Tuple[int, int], predictor: Any) -> Optional[ReadAhead]:
        """Batched encoding ahead of the walk, when the encoder takes more than one slice per pass (a GPU); there
        the next batch is encoded while the walk decodes this one."""
        batch_size = self.embedder.batch_size(predictor)
        if batch_size <= 1:
            return None
        return ReadAhead(
            bounds, batch_size,
            encode=lambda indices: self.embedder.encode_into_cache(volume, view, indices, predictor),
            is_embedded=lambda index: self.embedder.is_ready(volume, view, index, predictor),
            overlap=self.overlap_read_ahead if self.overlap_read_ahead is not None else predictor.device.type == "cuda",
        )

    def segment(
        self,
        image_path: os.PathLike,
        requested: VoxelPrompts,
        context: ClickContext,
        axis: int = 2,
        settings: PropagationSettings = PropagationSettings(),
    ) -> VolumeSegmentation:
        """Segment the slices ``requested`` prompts (every prompted slice; ``slice_index`` is not used) and propagate
        from them both ways along ``axis`` as ``settings`` say; a client's earlier walk is kept and extended.

        Args:
            image_path: the image file (read once, then cached by content).
            requested: points and box in voxel indices of the image, as the request layer read them.
            context: who prompts on what; a known client's propagation state is kept between requests.
            axis: the slicing axis (0 i, 1 j, 2 k).
            settings: projection, stop thresholds, box growth, review threshold, frame step.
        """
        started = time.perf_counter()
        predictor = self.models.predictor()
        volume = self.volumes.get(image_path)
        view = volume.view(axis)
        if volume.layout == "stack":
            raise InvalidRequestError(
                f"The image is a stack of {volume.shape[2]} separate 2D pictures (one series holding, say, a frontal "
                "and a lateral film): they are not neighbours in space or time, so nothing can be propagated "
                "between them. Click on each picture with medicosam_interactive instead.")
        prompts = dataclasses.replace(prompts_within(requested, volume.shape), slice_index=None)  # every slice counts
        slices, corrections = prompted_slices(prompts, view)
        bounds = capped_bounds(propagation_bounds(prompts, view), [*slices, *corrections], self.max_slices)

        timings = {"encode": 0.0, "decode": 0.0}
        read_ahead = self.read_ahead(volume, view, bounds, predictor)
        segment = slice_segmenter(self.embedder, predictor, volume, view, timings, read_ahead)

        key = (context.client_id, context.image_id, context.label, axis, settings, volume.content_hash, self.models.encoder_key_for(predictor))
        if context.reset_state and context.remembered:
            self.memory.reset(context.client_id, context.image_id, context.label)
        earlier = self.memory.get(key) if context.remembered else None  # anonymous: from the prompts alone
        hold = self.embedder.prefetcher.hold() if self.embedder.prefetcher is not None else contextlib.nullcontext()
        try:
            with hold:
                result = Propagator(segment, settings).run(slices, bounds, earlier, corrections)
        finally:
            if read_ahead is not None:
                read_ahead.close()
        if context.remembered:
            self.memory.put(key, result.state)

        pasted = time.perf_counter()
        label = np.zeros(volume.shape, dtype=np.uint8, order="F")
        for index, answer in result.masks.items():
            view.paste(answer.mask.astype(np.uint8), label, index)
        done = time.perf_counter()
        return VolumeSegmentation(
            label=label,
            volume=volume,
            axis=axis,
            result=result,
            decoder_version=getattr(predictor, "decoder_version", None),
            latencies={
                "encode": round(timings["encode"], 4),
                "decode": round(timings["decode"], 4),
                "post": round(done - pasted, 4),
                "propagation": round(pasted - started, 4),
            },
        )
