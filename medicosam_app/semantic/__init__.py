"""Automatic (semantic) segmentation: a UNETR decoder on the frozen MedicoSAM encoder, its training on
accepted labels, and its versions."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

from .config import TrainingConfig
from .schedule import build_scheduler, run_in_background

if TYPE_CHECKING:
    from .active_learning import UncertaintyRanker, mean_entropy, sampled_slices, score_against_label
    from .classes import DEFAULT_CLASSES, SemanticClasses
    from .distributed import DistContext
    from .initial_weights import initial_decoder, load_released_decoder
    from .metrics import dice_per_class
    from .network import DecoderShape, UNETRDecoder, logits_to_slice
    from .retrain import SemanticRetrainer
    from .segmenter import NoSemanticModelError, SemanticResult, SemanticSegmenter
    from .training import semantic_loss

__all__ = [
    "DEFAULT_CLASSES",
    "DecoderShape",
    "DistContext",
    "NoSemanticModelError",
    "SemanticClasses",
    "SemanticResult",
    "SemanticRetrainer",
    "SemanticSegmenter",
    "TrainingConfig",
    "UNETRDecoder",
    "UncertaintyRanker",
    "build_scheduler",
    "dice_per_class",
    "initial_decoder",
    "load_released_decoder",
    "logits_to_slice",
    "mean_entropy",
    "run_in_background",
    "sampled_slices",
    "score_against_label",
    "semantic_loss",
]

# Imported on first use (PEP 562), not here: these modules import numpy, and most of them torch and
# segment_anything, which :mod:`.config` and :mod:`.schedule` (the settings and the scheduler read them) do without.
_LAZY = {
    "UncertaintyRanker": ".active_learning",
    "mean_entropy": ".active_learning",
    "sampled_slices": ".active_learning",
    "score_against_label": ".active_learning",
    "DEFAULT_CLASSES": ".classes",
    "SemanticClasses": ".classes",
    "DistContext": ".distributed",
    "initial_decoder": ".initial_weights",
    "load_released_decoder": ".initial_weights",
    "dice_per_class": ".metrics",
    "DecoderShape": ".network",
    "UNETRDecoder": ".network",
    "logits_to_slice": ".network",
    "SemanticRetrainer": ".retrain",
    "NoSemanticModelError": ".segmenter",
    "SemanticResult": ".segmenter",
    "SemanticSegmenter": ".segmenter",
    "semantic_loss": ".training",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
