"""The ``everything`` mode: SAM's automatic mask generation on one slice, from its cached embedding.

A regular grid of single-point prompts is decoded in batches, three masks per point. A mask is kept when
the model's own predicted IoU and its stability (how little the mask changes when the logit threshold
moves by ``stability_score_offset``) are both high; the same object found from many grid points is
reduced to its best mask by non-maximum suppression on the boxes; tiny masks are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Protocol, Tuple

import numpy as np
import torch
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from torchvision.ops import nms

from ..errors import InvalidRequestError
from ..request_values import parse_int, parse_number

MASK_THRESHOLD = 0.0  # SAM's logit threshold


@dataclass(frozen=True)
class GridSettings:
    """SAM's automatic mask generator settings (its defaults, but a 16×16 grid: a CPU answers in seconds)."""

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_area: int = 25  # pixels; smaller masks are noise on a CT or MR slice

    LIMITS = {  # request key → (minimum, maximum)
        "points_per_side": (1, 64),
        "points_per_batch": (1, 256),
        "pred_iou_thresh": (0.0, 1.0),
        "stability_score_thresh": (0.0, 1.0),
        "stability_score_offset": (0.0, 10.0),
        "box_nms_thresh": (0.0, 1.0),
        "min_area": (0, 1 << 24),
    }

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> "GridSettings":
        """The request's values over the defaults; a value of the wrong kind or out of range is a 422."""
        values = {}
        for key, (low, high) in cls.LIMITS.items():
            if params.get(key) is None:
                continue
            parse = parse_int if isinstance(low, int) else parse_number
            values[key] = parse(params[key], key, low, high)
        return cls(**values)


@dataclass(frozen=True)
class SliceObject:
    """One object found on the slice: its mask, box (x0, y0, x1, y1, inclusive) and the model's scores."""

    mask: np.ndarray  # (H, W) bool
    box_xyxy: Tuple[int, int, int, int]
    predicted_iou: float
    stability: float
    point_xy: Tuple[float, float]  # the grid point that found it

    @property
    def area(self) -> int:
        return int(self.mask.sum())


class PointPromptDecoder(Protocol):
    """What the generator needs from a model: decode many single-point prompts, then upscale the survivors."""

    def decode(self, points_xy: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 2) pixel points → logits (B, M, h, w) and predicted IoUs (B, M)."""

    def upscale(self, logits: torch.Tensor) -> torch.Tensor:
        """(K, h, w) logits → (K, H, W) logits in the slice's pixels."""


class PredictorPointDecoder:
    """:class:`PointPromptDecoder` over a :class:`~medicosam_app.predictor.PromptPredictor` and one embedding."""

    def __init__(self, predictor: Any, embedding: Any) -> None:
        self.predictor = predictor
        self.embedding = embedding

    def decode(self, points_xy: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.predictor.decode_points(self.embedding, points_xy)

    def upscale(self, logits: torch.Tensor) -> torch.Tensor:
        return self.predictor.upscale(logits[:, None], self.embedding.original_size)[:, 0]


def grid_points(shape: Tuple[int, int], points_per_side: int) -> np.ndarray:
    """(P, 2) pixel (x, y) points of a regular grid over an image of ``shape`` (rows, columns)."""
    unit = build_point_grid(points_per_side)  # cell centres in [0, 1]
    rows, cols = shape
    return unit * np.array([cols, rows], dtype=float)


def generate(decoder: PointPromptDecoder, shape: Tuple[int, int], settings: GridSettings = GridSettings()) -> List[SliceObject]:
    """Every object the grid prompts find on one slice, best predicted IoU first."""
    points = grid_points(shape, settings.points_per_side)
    masks: List[torch.Tensor] = []
    ious: List[torch.Tensor] = []
    stabilities: List[torch.Tensor] = []
    origins: List[np.ndarray] = []
    for start in range(0, len(points), settings.points_per_batch):
        batch = points[start : start + settings.points_per_batch]
        logits, predicted = decoder.decode(batch)
        per_mask = logits.shape[1]
        logits, predicted = logits.flatten(0, 1), predicted.flatten(0, 1).float()
        keep = predicted >= settings.pred_iou_thresh
        if not keep.any():
            continue
        full = decoder.upscale(logits[keep]).float()  # only the survivors reach the image's size
        stability = calculate_stability_score(full, MASK_THRESHOLD, settings.stability_score_offset)
        stable = stability >= settings.stability_score_thresh
        binary = full[stable] > MASK_THRESHOLD
        area = binary.flatten(1).sum(1)
        big = area >= max(settings.min_area, 1)
        masks.append(binary[big].cpu())
        ious.append(predicted[keep][stable][big].cpu())
        stabilities.append(stability[stable][big].cpu())
        point_index = np.repeat(np.arange(len(batch)), per_mask)[keep.cpu().numpy()][stable.cpu().numpy()][big.cpu().numpy()]
        origins.append(batch[point_index])
    if not masks or sum(len(m) for m in masks) == 0:
        return []
    all_masks = torch.cat(masks)
    all_ious = torch.cat(ious)
    all_stability = torch.cat(stabilities)
    all_points = np.concatenate(origins)
    boxes = batched_mask_to_box(all_masks)  # (K, 4) x0, y0, x1, y1
    kept = nms(boxes.float(), all_ious, settings.box_nms_thresh)  # sorted by score, best first
    return [
        SliceObject(
            mask=all_masks[k].numpy(),
            box_xyxy=tuple(int(v) for v in boxes[k]),  # type: ignore[arg-type]
            predicted_iou=float(all_ious[k]),
            stability=float(all_stability[k]),
            point_xy=(float(all_points[k][0]), float(all_points[k][1])),
        )
        for k in kept.tolist()
    ]


def grid_size_note(settings: GridSettings) -> str:
    """How much work a grid is, for logs: points and decoder batches."""
    points = settings.points_per_side ** 2
    return f"{points} points in {math.ceil(points / settings.points_per_batch)} batches"
