"""One proposal → one 3D instance: MedicoSAM draws the object on each slice its proposal covers.

The anchor slice (the proposal's largest) is drawn from its box alone. From there the drawing walks to
the neighbouring slices in both directions; each slice is prompted with its own proposal box (grown by
``box_extension``) plus, in ``mask`` projection, the previous slice's logits as a mask prompt. A walk
stops by 3D propagation's rules: an empty mask, too little overlap with the previous slice, or a
predicted IoU below ``min_predicted_iou``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch
from segment_anything.utils.amg import calculate_stability_score

from ..interactive.prompts import SlicePrompt
from ..interactive.propagation import SegmentSlice, SliceMask, stop_reason
from ..interactive.propagation_settings import PropagationSettings
from .instance_label import DrawnInstance
from .proposals import Proposal

NO_POINTS = (np.zeros((0, 2)), np.zeros(0, dtype=int))


def grow_box(box: np.ndarray, extension: float, shape: Tuple[int, int]) -> np.ndarray:
    """``box`` grown by ``extension`` of its size on each side, kept inside a slice of ``shape``."""
    x0, y0, x1, y1 = box
    grow_x, grow_y = (x1 - x0 + 1) * extension, (y1 - y0 + 1) * extension
    rows, cols = shape
    return np.array([max(x0 - grow_x, 0.0), max(y0 - grow_y, 0.0), min(x1 + grow_x, cols - 1.0), min(y1 + grow_y, rows - 1.0)])


def clip_to_box(mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
    clipped = np.zeros_like(mask)
    clipped[y0 : y1 + 1, x0 : x1 + 1] = mask[y0 : y1 + 1, x0 : x1 + 1]
    return clipped


def stability(logits: Optional[torch.Tensor], offset: float = 1.0) -> float:
    """SAM's stability score of a low-resolution mask: IoU of the masks at logit thresholds ±``offset``."""
    if logits is None:
        return 1.0
    return float(calculate_stability_score(logits.float(), 0.0, offset).mean())


class InstanceDrawer:
    """Draws proposals with a per-slice ``segment`` function (the same one 3D propagation uses)."""

    def __init__(self, segment: SegmentSlice, slice_shape: Tuple[int, int], settings: PropagationSettings = PropagationSettings()) -> None:
        self.segment = segment
        self.slice_shape = slice_shape
        self.settings = settings

    def draw(self, proposal: Proposal) -> Optional[DrawnInstance]:
        """The instance, or None when the model finds nothing at the anchor slice's box."""
        anchor = self._decode(proposal, proposal.anchor, None)
        if not anchor.mask.any():
            return None
        masks: Dict[int, SliceMask] = {proposal.anchor: anchor}
        stops: Dict[str, Optional[str]] = {}
        for end, step in (("below", -1), ("above", +1)):
            stops[end] = self._walk(proposal, anchor, step, masks)
        predicted = [m.predicted_iou for m in masks.values()]
        stable = [stability(m.logits) for m in masks.values()]
        return DrawnInstance(
            class_name=proposal.class_name,
            class_value=proposal.class_value,
            masks={index: m.mask for index, m in sorted(masks.items())},
            score=proposal.score,
            predicted_iou=float(np.mean(predicted)),
            stability=float(np.mean(stable)),
            stops=stops,
        )

    def _walk(self, proposal: Proposal, start: SliceMask, step: int, masks: Dict[int, SliceMask]) -> Optional[str]:
        previous, index = start, proposal.anchor + step
        while index in proposal.boxes:
            logits = previous.logits if self.settings.projection == "mask" else None
            new = self._decode(proposal, index, logits)
            reason = stop_reason(previous, new, self.settings)
            if reason is not None:
                return f"slice {index}: {reason}"
            masks[index] = previous = new
            index += step
        return None

    def _decode(self, proposal: Proposal, index: int, logits: Optional[torch.Tensor]) -> SliceMask:
        box = proposal.boxes[index]
        prompt_box = box if proposal.clip_to_boxes else grow_box(box, self.settings.box_extension, self.slice_shape)
        answer = self.segment(index, SlicePrompt(*NO_POINTS, prompt_box), logits)
        if proposal.clip_to_boxes:
            answer = SliceMask(clip_to_box(answer.mask, box), answer.logits, answer.predicted_iou)
        return answer
