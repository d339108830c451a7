"""What every training round shares, semantic or interactive: whether there is anything new to learn, which
images validate (a fixed verdict per image id, so they stay validation images as data grows), and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import xxhash

from .labelled_images import LabelledImage
from .versions import VersionStore


@dataclass
class RoundSummary:
    """A training round's outcome, as both learners report it."""

    status: str  # "trained", "nothing-to-do", "busy"
    new_labels: int = 0
    version: Optional[str] = None
    promoted: bool = False
    reason: str = ""
    metrics: Dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        if self.status != "trained":
            return f"{self.status}: {self.reason}"
        verdict = "promoted" if self.promoted else "kept, not promoted"
        return f"{self.version} from {self.new_labels} new labels, {verdict} ({self.reason})"

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in ("status", "new_labels", "version", "promoted", "reason", "metrics")}


def decide_round(
    store: VersionStore, studies: Sequence[LabelledImage], min_new_labels: int, force: bool,
    summary: Type[RoundSummary] = RoundSummary,
) -> RoundSummary:
    """``go`` (with the count of new labels) or why a round has nothing to do."""
    if not studies:
        return summary("nothing-to-do", reason="no image has a final label yet")
    new = len(store.new_labels(studies))
    if new < max(1, min_new_labels) and not force:
        return summary(
            "nothing-to-do", new_labels=new,
            reason=f"{new} new labels since {store.latest() or 'the start'}, {max(1, min_new_labels)} needed",
        )
    return summary("go", new_labels=new)


def is_validation_image(image_id: str, fraction: float) -> bool:
    """A fixed verdict per image id, so validation images stay validation images as data grows."""
    return xxhash.xxh64_intdigest(image_id.encode()) % 1000 < fraction * 1000


def split_images(studies: Sequence[LabelledImage], fraction: float) -> Tuple[List[LabelledImage], List[LabelledImage]]:
    """(train, validation) by image. With a single labelled image there is no image to hold out; the
    caller then holds out slices instead."""
    if len(studies) < 2 or fraction <= 0:
        return list(studies), []
    val = [s for s in studies if is_validation_image(s.image_id, fraction)]
    if not val:
        val = [min(studies, key=lambda s: xxhash.xxh64_intdigest(s.image_id.encode()))]
    if len(val) == len(studies):
        val = val[:-1]
    train = [s for s in studies if s not in val]
    return train, val
