"""How a propagation walks: projection, stop thresholds, box growth, review threshold, frame step.

One value per request, read by the request layer (:mod:`medicosam_app.api`) over the server's defaults; part of the
key under which a client's propagation state is kept, so a change of setting recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidRequestError

Projection = Literal["mask", "box", "points"]
PROJECTIONS = ("mask", "box", "points")
MAX_FRAME_STEP = 16


@dataclass(frozen=True)
class PropagationSettings:
    """Defaults follow micro-sam's annotator (IoU 0.5, box extension 0.05) with box+mask projection."""

    projection: Projection = "mask"
    iou_threshold: float = 0.5  # stop when IoU(previous slice, new slice) falls below
    min_predicted_iou: float = 0.5  # stop when the model's predicted IoU falls below (0: never)
    box_extension: float = 0.05  # the projected box grows by this fraction of its size on each side
    low_confidence: float = 0.8  # slices whose predicted IoU is below are listed for review
    frame_step: int = 1  # segment every n-th slice of a walk; those between hold the previous mask

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise InvalidRequestError(f"'projection' must be one of {PROJECTIONS}, not {self.projection!r}.")
        for name in ("iou_threshold", "min_predicted_iou", "low_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidRequestError(f"'{name}' must lie between 0 and 1, got {value}.")
        if not 0.0 <= self.box_extension <= 1.0:
            raise InvalidRequestError(f"'box_extension' must lie between 0 and 1, got {self.box_extension}.")
        if not (isinstance(self.frame_step, int) and 1 <= self.frame_step <= MAX_FRAME_STEP):
            raise InvalidRequestError(f"'frame_step' must be a whole number from 1 to {MAX_FRAME_STEP}, got {self.frame_step!r}.")
