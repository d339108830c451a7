"""The ``everything`` mode: SAM's automatic mask generation on one slice, from its cached embedding.

A regular grid of single-point prompts is decoded in batches, three masks per point. A mask is kept when
the model's own predicted IoU and its stability (how little the mask changes when the logit threshold
moves by ``stability_score_offset``) are both high; the same object found from many grid points is
reduced to its best mask by non-maximum suppression on the boxes; tiny masks are dropped.

On a CPU every prompt costs a whole mask-decoder pass (batching does not amortise it there), so by default
two kinds of grid point are not decoded: points on flat dark background (air, an MR's zero surround),
whose masks a reader never wants, and points inside an object already found, whose masks would be that
object or its parts again (the point that found it already gave three granularities). Both are switches;
with both off this is SAM's automatic mask generator on one crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Tuple

import numpy as np
import torch
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from torchvision.ops import nms

from .grid_decoder import GridMaskDecoder

MASK_THRESHOLD = 0.0  # SAM's logit threshold


@dataclass(frozen=True)
class GridSettings:
    """SAM's automatic mask generator settings (its defaults, but a 16×16 grid: a CPU answers in seconds)."""

    points_per_side: int = 16
    points_per_batch: Optional[int] = None  # None: 4 on a CPU (larger batches only add cache misses), 64 on a GPU
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_area: int = 25  # pixels; smaller masks are noise on a CT or MR slice
    # Not SAM's: fewer prompts on a CPU, where every prompt costs a whole decoder pass (see generate()).
    skip_background: bool = True
    background_level: int = 8  # of 255 in the displayed slice
    prune_covered: bool = True
    max_covering_fraction: float = 0.25


@dataclass(frozen=True)
class SliceObject:
    """One object found on the slice: its mask, box (x0, y0, x1, y1, inclusive) and the model's scores."""

    mask: np.ndarray  # (H, W) bool
    box_xyxy: Tuple[int, int, int, int]
    predicted_iou: float
    stability: float
    point_xy: Tuple[float, float]  # the grid point that found it


class PointPromptDecoder(Protocol):
    """What the generator needs from a model, in the order it needs it: predicted IoUs for a batch of
    single-point prompts first, mask logits only for the prompts worth keeping, then full-size logits."""

    def predict(self, points_xy: np.ndarray) -> Tuple[torch.Tensor, Any]:
        """(B, 2) pixel points → predicted IoUs (B, M), and whatever :meth:`logits` needs of this batch."""

    def logits(self, state: Any, keep: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (K, M, h, w) of the prompts ``keep`` (a (B,) boolean tensor) selects."""

    def upscale(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, h, w) logits → (N, H, W) logits in the slice's pixels."""


class PredictorPointDecoder:
    """:class:`PointPromptDecoder` over a :class:`~medicosam_app.model.predictor.PromptPredictor` and one embedding,
    through :class:`~.grid_decoder.GridMaskDecoder` (segment-anything's logits, with the shared work done once)."""

    def __init__(self, predictor: Any, embedding: Any) -> None:
        self.predictor = predictor
        self.embedding = embedding
        self.grid = GridMaskDecoder(
            predictor.sam, embedding.features.to(predictor.device), predictor.dense_pe, embedding.original_size
        )

    def predict(self, points_xy: np.ndarray) -> Tuple[torch.Tensor, Any]:
        decoded = self.grid.transform(points_xy)
        return decoded.predicted_iou, decoded

    def logits(self, state: Any, keep: torch.Tensor) -> torch.Tensor:
        return self.grid.masks(state, keep)

    def upscale(self, logits: torch.Tensor) -> torch.Tensor:
        return self.predictor.upscale(logits[:, None], self.embedding.original_size)[:, 0]


def grid_points(shape: Tuple[int, int], points_per_side: int) -> np.ndarray:
    """(P, 2) pixel (x, y) points of a regular grid over an image of ``shape`` (rows, columns)."""
    unit = build_point_grid(points_per_side)  # cell centres in [0, 1]
    rows, cols = shape
    return unit * np.array([cols, rows], dtype=float)


def coarse_to_fine(points_per_side: int) -> np.ndarray:
    """An order of the grid's points (row-major indices) that covers the slice evenly from the start: every
    8th point of every 8th row first, then the points in between, halving the stride each time."""

    def stride(n: int) -> int:
        step = 1
        while step < points_per_side and n % (2 * step) == 0:
            step *= 2
        return step

    keys = [(-min(stride(r), stride(c)), r, c) for r in range(points_per_side) for c in range(points_per_side)]
    return np.array([r * points_per_side + c for _, r, c in sorted(keys)])


def on_flat_background(points_xy: np.ndarray, display: np.ndarray, radius: int, level: int) -> np.ndarray:
    """Which points lie in dark, featureless surroundings (air, the zero padding around an MR): every
    displayed pixel within ``radius`` at or below ``level``."""
    rows, cols = display.shape
    flat = np.zeros(len(points_xy), dtype=bool)
    for n, (x, y) in enumerate(points_xy):
        r, c = int(min(y, rows - 1)), int(min(x, cols - 1))
        window = display[max(r - radius, 0) : r + radius + 1, max(c - radius, 0) : c + radius + 1]
        flat[n] = int(window.max()) <= level
    return flat


@dataclass
class GridResult:
    """The objects found, best predicted IoU first, and how many grid points were decoded or skipped."""

    objects: List[SliceObject]
    decoded: int
    skipped_background: int
    skipped_covered: int

    def stats(self) -> Dict[str, int]:
        return {"objects_found": len(self.objects), "points_decoded": self.decoded,
                "points_skipped_background": self.skipped_background, "points_skipped_covered": self.skipped_covered}


def generate(
    decoder: PointPromptDecoder,
    shape: Tuple[int, int],
    settings: GridSettings = GridSettings(),
    display: Optional[np.ndarray] = None,
) -> GridResult:
    """Every object the grid prompts find on one slice.

    ``display`` is the slice as the model sees it (H×W uint8); without it no point counts as background.
    With ``prune_covered`` the points are decoded coarse to fine and a point inside an object already
    found (one that covers at most ``max_covering_fraction`` of the slice, so the body outline prunes
    nothing) is not decoded: its three masks would be that object again, or parts of it.
    """
    batch_size = settings.points_per_batch or 4
    points = grid_points(shape, settings.points_per_side)
    order = coarse_to_fine(settings.points_per_side) if settings.prune_covered else np.arange(len(points))
    points = points[order]
    skipped_background = 0
    if settings.skip_background and display is not None:
        radius = max(1, int(min(shape) / settings.points_per_side / 2))
        flat = on_flat_background(points, display, radius, settings.background_level)
        skipped_background = int(flat.sum())
        points = points[~flat]
    covered = np.zeros(shape, dtype=bool)
    cover_limit = settings.max_covering_fraction * shape[0] * shape[1]
    masks: List[torch.Tensor] = []
    ious: List[torch.Tensor] = []
    stabilities: List[torch.Tensor] = []
    origins: List[np.ndarray] = []
    decoded = skipped_covered = 0
    pending = points
    while len(pending):
        if settings.prune_covered and covered.any():
            inside = covered[np.minimum(pending[:, 1].astype(int), shape[0] - 1), np.minimum(pending[:, 0].astype(int), shape[1] - 1)]
            skipped_covered += int(inside.sum())
            pending = pending[~inside]
            if not len(pending):
                break
        batch, pending = pending[:batch_size], pending[batch_size:]
        decoded += len(batch)
        found = _decode_batch(decoder, batch, settings)
        if found is None:
            continue
        binary, predicted, stability, origin = found
        masks.append(binary)
        ious.append(predicted)
        stabilities.append(stability)
        origins.append(origin)
        if settings.prune_covered:
            small = binary.flatten(1).sum(1) <= cover_limit
            if small.any():
                covered |= binary[small].any(0).numpy()
    objects: List[SliceObject] = []
    if masks and sum(len(m) for m in masks):
        objects = _suppress_duplicates(torch.cat(masks), torch.cat(ious), torch.cat(stabilities), np.concatenate(origins), settings)
    return GridResult(objects, decoded, skipped_background, skipped_covered)


def _decode_batch(decoder: PointPromptDecoder, batch: np.ndarray, settings: GridSettings):
    """The masks of one batch of points that pass the predicted-IoU, stability and area filters."""
    predicted, state = decoder.predict(batch)
    predicted = predicted.float()
    confident = predicted >= settings.pred_iou_thresh  # (B, M)
    prompts = confident.any(dim=1)
    if not prompts.any():
        return None
    logits = decoder.logits(state, prompts)  # only prompts with a confident mask are upscaled at all
    keep = confident[prompts].flatten()
    full = decoder.upscale(logits.flatten(0, 1)[keep]).float()
    stability = calculate_stability_score(full, MASK_THRESHOLD, settings.stability_score_offset)
    stable = stability >= settings.stability_score_thresh
    binary = full[stable] > MASK_THRESHOLD
    big = binary.flatten(1).sum(1) >= max(settings.min_area, 1)
    if not big.any():
        return None
    per_mask = confident.shape[1]
    origin = np.repeat(np.flatnonzero(prompts.cpu().numpy()), per_mask)[keep.cpu().numpy()]
    origin = origin[stable.cpu().numpy()][big.cpu().numpy()]
    scores = predicted[prompts].flatten()[keep]
    return binary[big].cpu(), scores[stable][big].cpu(), stability[stable][big].cpu(), batch[origin]


def _suppress_duplicates(masks, ious, stabilities, points, settings: GridSettings) -> List[SliceObject]:
    boxes = batched_mask_to_box(masks)  # (K, 4) x0, y0, x1, y1
    kept = nms(boxes.float(), ious, settings.box_nms_thresh)  # sorted by score, best first
    return [
        SliceObject(
            mask=masks[k].numpy(),
            box_xyxy=tuple(int(v) for v in boxes[k]),  # type: ignore[arg-type]
            predicted_iou=float(ious[k]),
            stability=float(stabilities[k]),
            point_xy=(float(points[k][0]), float(points[k][1])),
        )
        for k in kept.tolist()
    ]


def grid_size_note(settings: GridSettings) -> str:
    """How much work a grid is, for logs: points and decoder batches."""
    points = settings.points_per_side ** 2
    return f"{points} points, {settings.points_per_batch or 4} per decoder batch"
