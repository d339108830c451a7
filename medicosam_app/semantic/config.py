"""Options of a semantic training run, with the defaults medico-sam used where it published them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from ..errors import InvalidRequestError


# Bounds of each numeric option: a request cannot occupy the server for days or exhaust its memory, and a
# validation share is always held out (a candidate with nothing to validate on is never promoted).
LIMITS: Dict[str, tuple] = {
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
class TrainingConfig:
    """What a run may be told, from the server's ``--conf``/train request or the command line."""

    epochs: int = 20
    learning_rate: float = 1e-4  # medico-sam's
    batch_size: int = 4
    max_slices_per_image: int = 64
    val_fraction: float = 0.2
    axis: int = 2  # the slicing the interactive tasks use, so their cached embeddings are reused
    seed: int = 0
    warm_start: bool = True  # continue from the serving version when its shape fits
    initial_features: int = 64  # decoder width; the published decoder has 64

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Optional["TrainingConfig"] = None) -> "TrainingConfig":
        """Known keys from ``values`` (strings accepted) over ``base``; anything malformed is a 422."""
        base = base or cls()
        updates = {}
        for f in dataclasses.fields(cls):
            if f.name not in values or values[f.name] in (None, ""):
                continue
            raw = values[f.name]
            try:
                if f.type in ("bool", bool):
                    updates[f.name] = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
                else:
                    updates[f.name] = (int if f.type in ("int", int) else float)(raw)
            except (TypeError, ValueError) as error:
                raise InvalidRequestError(f"Training option {f.name}={raw!r} is not a valid {f.type}.") from error
        config = dataclasses.replace(base, **updates)
        for name, (low, high) in LIMITS.items():
            value = getattr(config, name)
            if not (low <= value <= high) or (name == "learning_rate" and value == 0):
                raise InvalidRequestError(
                    f"Training option {name}={value!r} is out of range: it must lie in [{low}, {high}]"
                    + (" and be above 0." if name == "learning_rate" else ".")
                )
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
