"""Options of a semantic training run, with the defaults medico-sam used where it published them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from ..errors import InvalidRequestError


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
        if config.epochs < 0 or config.batch_size < 1 or config.learning_rate <= 0 or not 0 <= config.val_fraction < 1:
            raise InvalidRequestError(f"Training options out of range: {config}")
        if config.axis not in (0, 1, 2):
            raise InvalidRequestError("axis must be 0, 1 or 2")
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
