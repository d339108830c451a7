"""The promotion gate: a candidate is served only if, on held-out labelled images, it needs no more clicks
to reach 90 % Dice and ends no worse than the serving version, on the same objects with the same prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..embeddings.slice_embedder import SliceEmbedder
from ..evaluation.runner import EvaluationResult, EvaluationSettings, Evaluator
from ..model.predictor import PromptPredictor
from ..learning.labelled_images import LabelledImage


def headline(result: EvaluationResult) -> Dict[str, Any]:
    """NoC@90, first and final Dice over every 2D object and opening prompt."""
    flat = [o for o in result.objects if o.dimension == "2d"]
    last = result.settings.iterations - 1
    if not flat:
        return {"objects": 0, "noc90": None, "dice_first": None, "dice_final": None, "never90": 0}
    return {
        "objects": len(flat),
        "noc90": round(float(np.mean([o.noc["90"] for o in flat])), 4),
        "never90": sum(not o.reached["90"] for o in flat),
        "dice_first": round(float(np.mean([o.dice[0] for o in flat])), 4),
        "dice_final": round(float(np.mean([o.dice[last] for o in flat])), 4),
    }


@dataclass
class GateVerdict:
    promote: bool
    reason: str
    candidate: Dict[str, Any]
    serving: Optional[Dict[str, Any]]

    def to_dict(self) -> Dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason, "candidate": self.candidate, "serving": self.serving}


def gate_settings(slices_per_image: int, axis: int, seed: int) -> EvaluationSettings:
    """MedicoSAM's protocol, both opening prompts, 2D only (3D propagation would add time, not a verdict)."""
    return EvaluationSettings(protocol="medicosam", max_slices_per_image=slices_per_image, axis=axis,
                              volumetric=False, seed=seed, thresholds=(0.9,))


def run_gate(
    candidate: PromptPredictor,
    serving: PromptPredictor,
    serving_name: str,
    embedder: SliceEmbedder,
    studies: Sequence[LabelledImage],
    classes: Dict[str, int],
    settings: EvaluationSettings,
    progress: bool = False,
) -> GateVerdict:
    if not studies:
        return GateVerdict(False, "no held-out labelled image: never promoted unvalidated", {}, None)
    ours = headline(Evaluator(embedder, candidate).run(studies, classes, settings, progress))
    theirs = headline(Evaluator(embedder, serving).run(studies, classes, settings, progress))
    if not ours["objects"]:
        return GateVerdict(False, "the held-out images have no object to evaluate on", ours, theirs)
    fewer_clicks = ours["noc90"] <= theirs["noc90"]
    as_good = ours["dice_final"] >= theirs["dice_final"]
    summary = (f"NoC@90 {ours['noc90']:.2f} vs {theirs['noc90']:.2f}, final Dice {ours['dice_final']:.4f} vs "
               f"{theirs['dice_final']:.4f} of {serving_name} on {ours['objects']} held-out objects")
    if fewer_clicks and as_good:
        return GateVerdict(True, summary, ours, theirs)
    worse = [w for w, bad in (("NoC@90 higher", not fewer_clicks), ("final Dice lower", not as_good)) if bad]
    return GateVerdict(False, f"{' and '.join(worse)}: {summary}", ours, theirs)
