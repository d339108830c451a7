"""Which image to annotate next, and how well the automatic model does on the ones already annotated.

Uncertainty is the semantic decoder's mean voxel entropy (normalised to 0..1 by log N) on a few evenly
spaced slices per image, computed from cached embeddings; scores are remembered per image content and
model version, so asking again costs nothing until the model or the image changes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..geometry.volume import read_label
from ..lru import LRUCache
from .metrics import DiceAccumulator
from .segmenter import SemanticSegmenter
from .slices import choose_slices

logger = logging.getLogger(__name__)


def sampled_slices(num_slices: int, count: int) -> List[int]:
    """``count`` evenly spaced slice indices, avoiding the outermost slices (often empty)."""
    if num_slices <= count:
        return list(range(num_slices))
    return sorted({int(round(x)) for x in np.linspace(0, num_slices - 1, count + 2)[1:-1]})


def mean_entropy(probabilities: np.ndarray) -> float:
    """Mean voxel entropy of (…, N, H, W) class probabilities, divided by log N (1 = uniform, 0 = certain)."""
    n = probabilities.shape[-3]
    p = np.clip(probabilities, 1e-8, 1.0)
    entropy = -(p * np.log(p)).sum(axis=-3)
    return float(entropy.mean() / math.log(n)) if n > 1 else 0.0


@dataclass(frozen=True)
class UncertaintyScore:
    image: str
    entropy: float
    version: str


class UncertaintyRanker:
    """Ranks images by the served semantic decoder's uncertainty; most uncertain first."""

    def __init__(self, segmenter: SemanticSegmenter, slices_per_image: int = 5) -> None:
        self.segmenter = segmenter
        self.slices_per_image = slices_per_image
        # One float per (image content, version, sample size); bounded, as images and versions keep coming.
        self._scores: LRUCache[float] = LRUCache(max_bytes=100_000, size_of=lambda _: 1)

    def score(self, image_path: str) -> UncertaintyScore:
        served = self.segmenter.served()
        volume = self.segmenter.volumes.get(image_path)
        view = volume.configured_view(self.segmenter.axis)
        key = (volume.content_hash, served.version, self.slices_per_image)

        def entropy() -> float:
            indices = sampled_slices(view.num_slices, self.slices_per_image)
            return mean_entropy(self.segmenter.probabilities(served, volume, view, indices))

        score, _ = self._scores.get_or_compute(key, entropy)
        return UncertaintyScore(image_path, score, served.version)

    def rank(self, image_paths: Sequence[str]) -> List[UncertaintyScore]:
        return sorted((self.score(path) for path in image_paths), key=lambda s: s.entropy, reverse=True)


def score_against_label(
    segmenter: SemanticSegmenter, image_path: str, label_path: str, max_slices: int = 64
) -> Dict[str, object]:
    """Dice per class between the served model's prediction and an accepted label of the same image.

    Evaluated on the slices training uses (every labelled slice, thinned to ``max_slices``), whose
    embeddings training has cached: scoring after each training round costs decoder time only.
    """
    served = segmenter.served()
    volume = segmenter.volumes.get(image_path)
    truth = read_label(Path(label_path))
    if truth.shape != volume.shape:
        raise ValueError(f"label shape {truth.shape} differs from image shape {volume.shape}")
    view = volume.configured_view(segmenter.axis)
    targets = served.classes.to_indices(truth.array)
    indices = choose_slices(truth.array, view, max_slices)
    accumulator = DiceAccumulator(served.classes.names)
    for start in range(0, len(indices), segmenter.batch_size):
        batch = indices[start : start + segmenter.batch_size]
        for index, probs in zip(batch, segmenter.probabilities(served, volume, view, batch)):
            accumulator.add("image", probs.argmax(0).astype(np.uint8), view.extract(targets, index))
    return dict(accumulator.summary(), version=served.version, slices=len(indices))
