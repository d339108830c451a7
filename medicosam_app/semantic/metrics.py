"""Per-class Dice, accumulated per image over the slices that were evaluated, then averaged over images."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, Optional, Sequence

import numpy as np


class DiceAccumulator:
    """Add (prediction, truth) class-index slices image by image; read per-class and mean Dice."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)  # foreground classes; index i + 1 in the maps
        n = len(self.class_names) + 1
        self._overlap: Dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n))
        self._total: Dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n))

    def add(self, image_id: str, prediction: np.ndarray, truth: np.ndarray) -> None:
        n = len(self.class_names) + 1
        pred_counts = np.bincount(prediction.ravel(), minlength=n)[:n]
        true_counts = np.bincount(truth.ravel(), minlength=n)[:n]
        both = np.bincount(truth.ravel()[prediction.ravel() == truth.ravel()], minlength=n)[:n]
        self._overlap[image_id] += both
        self._total[image_id] += pred_counts + true_counts

    def per_image(self) -> Dict[str, Dict[str, Optional[float]]]:
        """Dice per image and class; None where a class is absent from both prediction and truth."""
        result = {}
        for image_id, total in self._total.items():
            overlap = self._overlap[image_id]
            result[image_id] = {
                name: (None if total[i] == 0 else float(2 * overlap[i] / total[i]))
                for i, name in enumerate(self.class_names, start=1)
            }
        return result

    def summary(self) -> Dict[str, object]:
        """``{"per_class": {name: mean over images}, "mean": mean over classes}`` (0 when nothing was seen)."""
        per_image = self.per_image()
        per_class = {}
        for name in self.class_names:
            values = [scores[name] for scores in per_image.values() if scores[name] is not None]
            per_class[name] = float(np.mean(values)) if values else None
        seen = [v for v in per_class.values() if v is not None]
        return {"per_class": per_class, "mean": float(np.mean(seen)) if seen else 0.0, "images": len(per_image)}


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, class_names: Sequence[str]) -> Dict[str, object]:
    """Dice of one whole label volume (class-index maps of equal shape)."""
    accumulator = DiceAccumulator(class_names)
    accumulator.add("image", prediction, truth)
    return accumulator.summary()
