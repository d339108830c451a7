"""One simulated annotator on one 2D object: the first prompt, then corrections until the rules say stop.

The model is a function of the prompts so far, so the same session drives the served predictor, a second
checkpoint (``--compare``) or a finetuning candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .clicks import Click, CorrectionRule, first_click, mask_box

# (points_xy (N, 2), labels (N,), box (4,) or None, previous low-res logits or None) → (mask, low-res logits)
Decode = Callable[[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[torch.Tensor]], Tuple[np.ndarray, torch.Tensor]]

DEFAULT_ITERATIONS = 8  # the first prompt and 7 corrections, as medico-sam reports
DEFAULT_THRESHOLDS = (0.85, 0.9)
MAX_CLICKS = 20  # NoC is capped here: an object not reached by then counts 20 and as a failure


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


@dataclass
class ObjectTrace:
    """What happened to one object: Dice and the number of prompts after every iteration.

    The opening prompt (a point, or a box) counts as one; each correction round adds its clicks.
    """

    start: str
    dice: List[float] = field(default_factory=list)
    prompts: List[int] = field(default_factory=list)
    clicks: List[Click] = field(default_factory=list)

    def noc(self, threshold: float, cap: int = MAX_CLICKS) -> Tuple[int, bool]:
        """Prompts needed until Dice ≥ ``threshold`` (``cap`` when never within ``cap``) and whether it got there."""
        for score, count in zip(self.dice, self.prompts):
            if count > cap:
                break
            if score >= threshold:
                return count, True
        return cap, False


def simulate(
    decode: Decode,
    truth: np.ndarray,
    start: str,
    rule: CorrectionRule,
    rng: np.random.Generator,
    iterations: int = DEFAULT_ITERATIONS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    max_clicks: int = MAX_CLICKS,
    mask_prompt: bool = False,
) -> ObjectTrace:
    """Run at least ``iterations`` predictions, then go on only while the highest threshold is unmet and the
    prompt count is under ``max_clicks`` (so NoC is exact up to the cap).

    ``mask_prompt`` gives the model its previous low-resolution logits with each correction, as the
    server does for a client that sends ``client_id``.
    """
    truth = np.asarray(truth, dtype=bool)
    trace = ObjectTrace(start)
    box = mask_box(truth) if start == "box" else None
    clicks: List[Click] = [] if start == "box" else [first_click(truth)]
    count = 1
    mask, logits = decode(*_points(clicks), box, None)
    trace.clicks = list(clicks)
    trace.dice.append(dice(mask, truth))
    trace.prompts.append(count)
    goal = max(thresholds) if thresholds else 1.0
    while len(trace.dice) < iterations or (max(trace.dice) < goal and count < max_clicks):
        new = rule(truth, mask, rng)
        if not new:  # nothing left to correct: the prediction stays as it is
            if len(trace.dice) >= iterations:
                break
            trace.dice.append(trace.dice[-1])
            trace.prompts.append(count)
            continue
        clicks += new
        count += len(new)
        mask, logits = decode(*_points(clicks), box, logits if mask_prompt else None)
        trace.clicks = list(clicks)
        trace.dice.append(dice(mask, truth))
        trace.prompts.append(count)
    return trace


def _points(clicks: Sequence[Click]) -> Tuple[np.ndarray, np.ndarray]:
    xy = np.array([(c.x, c.y) for c in clicks], dtype=float).reshape(-1, 2)
    labels = np.array([1 if c.positive else 0 for c in clicks], dtype=int)
    return xy, labels
