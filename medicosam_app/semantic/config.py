"""Options of a semantic training run, with the defaults medico-sam used where it published them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Tuple

from ..options import Options


# Bounds of each numeric option: a request cannot occupy the server for days or exhaust its memory, and a
# validation share is always held out (a candidate with nothing to validate on is never promoted).
LIMITS: Dict[str, Tuple[float, float]] = {
    "epochs": (0, 1000),
    "learning_rate": (0.0, 1.0),
    "batch_size": (1, 256),
    "max_slices_per_image": (1, 4096),
    "val_fraction": (0.0, 0.9),
    "axis": (0, 2),
    "seed": (0, 2**31 - 1),
    "initial_features": (8, 512),
}


@dataclass(frozen=True)
class TrainingConfig(Options):
    """What a run may be told, from the server's ``--conf``/train request or the command line."""

    LIMITS: ClassVar[Dict[str, Tuple[float, float]]] = LIMITS
    POSITIVE: ClassVar[Tuple[str, ...]] = ("learning_rate",)

    epochs: int = 20
    learning_rate: float = 1e-4  # medico-sam's
    batch_size: int = 4
    max_slices_per_image: int = 64
    val_fraction: float = 0.2
    axis: int = 2  # the slicing the interactive tasks use, so their cached embeddings are reused
    seed: int = 0
    warm_start: bool = True  # continue from the serving version when its shape fits
    initial_features: int = 64  # decoder width; the published decoder has 64
