"""Whether slice embeddings are kept at half precision: half the disk (2.1 MB instead of 4.2 MB per ViT-B slice)
and half the time to write them, if the masks agree.

The encoder's features are rounded to float16 values as soon as they are made (kept as float32 in memory, written
as float16 on disk, losslessly), so a slice decodes the same whether its embedding comes from memory, from disk
or from a fresh encode. ``auto`` rounds only if the masks of the precision-choice probe (16 points, 3 boxes on a
fixed slice) decoded from the rounded features agree with the unrounded ones (mean IoU ≥ 0.98, the precision
rule); the decision is remembered per machine, torch, checkpoint and precision in ``<cache_dir>/embedding_storage``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ..atomic_files import write_json_atomic
from .precision_choice import MIN_MASK_IOU, device_description, probe_prompts, probe_slice
from .predictor import ImageEmbedding, PromptPredictor

logger = logging.getLogger(__name__)

STORAGE_CHOICES = ("auto", "fp16", "fp32")


@dataclass
class StorageChoice:
    """The decision and what it rests on; ``/info`` shows it."""

    half: bool
    reason: str
    mean_mask_iou: Optional[float] = None
    from_cache: bool = False

    def to_dict(self) -> Dict:
        return asdict(self)


def half_precision_mask_iou(predictor: PromptPredictor) -> float:
    """Mean IoU of the probe masks decoded from float16-rounded features against the unrounded ones."""
    embedding = predictor.encode(probe_slice())
    if predictor.half_embeddings:  # already rounded: compare against the encoder's own output
        raise ValueError("measure with a predictor that keeps full-precision embeddings")
    rounded = ImageEmbedding(embedding.features.half().float(), embedding.original_size)
    ious = []
    for points, box in probe_prompts():
        labels = None if points is None else np.ones(len(points), dtype=int)
        full = predictor.predict(embedding, points, labels, box).mask
        half = predictor.predict(rounded, points, labels, box).mask
        union = np.logical_or(full, half).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(full, half).sum() / union))
    return float(np.mean(ious))


def choose_storage(
    predictor: PromptPredictor, setting: str, checkpoint_xxh128: str, folder: Optional[Path]
) -> StorageChoice:
    """``setting`` ``fp16`` / ``fp32`` forces; ``auto`` measures once (see the module's docstring)."""
    if setting not in STORAGE_CHOICES:
        raise ValueError(f"embedding_storage must be one of {STORAGE_CHOICES}, not {setting!r}")
    if setting != "auto":
        return StorageChoice(setting == "fp16", "set by configuration (embedding_storage)")
    text = json.dumps([device_description(predictor.device), torch.__version__, checkpoint_xxh128, predictor.precision])
    path = Path(folder) / f"storage-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json" if folder else None
    if path is not None:
        try:
            remembered = StorageChoice(**json.loads(path.read_text()))
            remembered.from_cache = True
            return remembered
        except (OSError, ValueError, TypeError):
            pass  # none yet, or unreadable: measure
    iou = half_precision_mask_iou(predictor)
    if iou >= MIN_MASK_IOU:
        choice = StorageChoice(True, f"float16 embeddings give the same masks (mean IoU {iou:.3f})", round(iou, 4))
    else:
        choice = StorageChoice(False, f"float16 embeddings change the masks (mean IoU {iou:.3f} < {MIN_MASK_IOU})", round(iou, 4))
    logger.info("Embeddings kept in %s: %s", "float16" if choice.half else "float32", choice.reason)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, choice.to_dict())
        except OSError as error:  # read-only cache: measured again at the next start, nothing else
            logger.warning("Could not remember the embedding storage choice in %s: %s", path.parent, error)
    return choice
