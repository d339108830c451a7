"""Interactive finetuning: the prompt encoder and mask decoder learn from accepted labels with simulated
prompts, on cached embeddings (the encoder stays frozen), gated by the evaluation before it is served."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .config import FinetuneConfig
    from .decoder_weights import decoder_state, load_decoder_state, predictor_with_decoder, sam_with_own_decoder
    from .encoder_changes import (
        LowRankAdapted,
        continues,
        encoder_change,
        encoder_tag,
        encoder_with_change,
        trainable_encoder,
    )
    from .prompting import jittered_box, random_inside
    from .rounds import InteractiveFinetuner
    from .samples import ObjectSample
    from .serving import ServedDecoder
    from .training import finetune, prediction_losses

__all__ = [
    "FinetuneConfig",
    "InteractiveFinetuner",
    "LowRankAdapted",
    "ObjectSample",
    "ServedDecoder",
    "continues",
    "decoder_state",
    "encoder_change",
    "encoder_tag",
    "encoder_with_change",
    "finetune",
    "jittered_box",
    "load_decoder_state",
    "prediction_losses",
    "predictor_with_decoder",
    "random_inside",
    "sam_with_own_decoder",
    "trainable_encoder",
]

# All imported on first use (PEP 562), not here: :mod:`.config` alone imports torch, the rest torch and
# segment_anything (:mod:`.prompting` scipy), and the settings read :mod:`.config` without the training stack.
_LAZY = {
    "FinetuneConfig": ".config",
    "decoder_state": ".decoder_weights",
    "load_decoder_state": ".decoder_weights",
    "predictor_with_decoder": ".decoder_weights",
    "sam_with_own_decoder": ".decoder_weights",
    "LowRankAdapted": ".encoder_changes",
    "continues": ".encoder_changes",
    "encoder_change": ".encoder_changes",
    "encoder_tag": ".encoder_changes",
    "encoder_with_change": ".encoder_changes",
    "trainable_encoder": ".encoder_changes",
    "jittered_box": ".prompting",
    "random_inside": ".prompting",
    "InteractiveFinetuner": ".rounds",
    "ObjectSample": ".samples",
    "ServedDecoder": ".serving",
    "finetune": ".training",
    "prediction_losses": ".training",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
