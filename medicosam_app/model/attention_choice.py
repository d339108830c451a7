"""Which form the relative-position bias takes in the fused attention (model/attention.py), measured on a GPU.

On a GPU the ``channels`` form lets the kernels that never write the (HW × HW) attention matrix run, where the
``mask`` form hands them a bias of that size (3.2 GB per global block at 8 slices): which is faster depends on
the card, the precision and the batch, so one block of each kind (windowed, global) is timed in each form, and the
encoder's time is their times by their counts. On a CPU the ``mask`` form is used without measuring: there the
extra channels triple the query-key products of the global blocks for no kernel gain (one ViT-B global block on a
2-core Intel Xeon with AMX: 986 ms as a mask, 2,287 ms as channels).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from .attention import BIAS_FORMS, FusedAttention, use_fused_attention
from .block_timing import blocks_ms, encoder_tokens
from .predictor import PromptPredictor

logger = logging.getLogger(__name__)


@dataclass
class AttentionChoice:
    """The decision and what it rests on; ``/info`` shows it."""

    form: str
    reason: str
    encoder_ms: Dict[str, float] = field(default_factory=dict)  # the blocks' estimate, by form

    def to_dict(self) -> Dict:
        return asdict(self)


def choose_bias_form(predictor: PromptPredictor, repeats: int = 3, measure: Optional[bool] = None) -> AttentionChoice:
    """Switch ``predictor``'s fused attention to the faster form on its device and say which and why.
    ``measure``: time both forms (default: on a GPU only)."""
    encoder = predictor.encoder
    if not any(isinstance(module, FusedAttention) for module in encoder.modules()):
        return AttentionChoice("sam", "fused attention is off: segment-anything's own attention")
    if not (predictor.device.type == "cuda" if measure is None else measure):
        use_fused_attention(encoder, "mask")
        return AttentionChoice("mask", "the bias as an additive mask: the faster form on a CPU")
    kinds: Dict[bool, List] = {}
    for block in encoder.blocks:
        kinds.setdefault(getattr(block, "window_size", 0) == 0, []).append(block)
    tokens = encoder_tokens(encoder, max(1, int(predictor.encode_batch_size)), predictor.device)
    estimates: Dict[str, float] = {}
    for form in BIAS_FORMS:
        use_fused_attention(encoder, form)
        estimates[form] = round(sum(
            blocks_ms(blocks[:1], tokens, repeats, predictor._autocast) * len(blocks) for blocks in kinds.values()), 2)
    form = min(estimates, key=estimates.get)
    use_fused_attention(encoder, form)
    choice = AttentionChoice(form, f"the {form} form is the faster here", estimates)
    logger.info("Attention bias as %s (encoder blocks ms by form: %s)", form, estimates)
    return choice
