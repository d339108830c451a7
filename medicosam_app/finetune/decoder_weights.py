"""The part of SAM that interactive finetuning changes: the prompt encoder and the mask decoder.

A version stores only these (a few MB for ViT-B); a predictor for a version shares the loaded image
encoder, so serving or gating a version costs no second copy of the 90M-parameter encoder and keeps
every cached embedding valid. (A version that finetuned the encoder too carries its change, see
:mod:`.encoder_changes`, and gets its own encoder copy and embeddings.)
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Dict, List, Optional

import torch
from segment_anything.modeling import Sam
from torch import nn

from ..model.predictor import PromptPredictor
from .encoder_changes import encoder_tag, encoder_with_change

TRAINED_PARTS = ("prompt_encoder", "mask_decoder")


def decoder_state(sam: Sam) -> Dict[str, torch.Tensor]:
    """A CPU copy of the prompt encoder's and mask decoder's weights, keyed as in the SAM checkpoint."""
    state = {}
    for part in TRAINED_PARTS:
        for name, value in getattr(sam, part).state_dict().items():
            state[f"{part}.{name}"] = value.detach().cpu().clone()
    return state


def load_decoder_state(sam: Sam, state: Dict[str, torch.Tensor]) -> None:
    """Load a :func:`decoder_state` into ``sam``; a state of another shape or with missing keys is refused."""
    for part in TRAINED_PARTS:
        prefix = f"{part}."
        getattr(sam, part).load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def trainable_parameters(sam: Sam) -> List[torch.nn.Parameter]:
    """Freeze the image encoder; return the prompt encoder's and mask decoder's parameters."""
    for parameter in sam.image_encoder.parameters():
        parameter.requires_grad_(False)
    parameters = []
    for part in TRAINED_PARTS:
        for parameter in getattr(sam, part).parameters():
            parameter.requires_grad_(True)
            parameters.append(parameter)
    return parameters


def sam_with_own_decoder(sam: Sam) -> Sam:
    """A SAM that shares ``sam``'s image encoder (same module, same weights) but owns a copy of its prompt
    encoder and mask decoder, to train or to load a version into without touching the served model."""
    return Sam(
        image_encoder=sam.image_encoder,
        prompt_encoder=copy.deepcopy(sam.prompt_encoder),
        mask_decoder=copy.deepcopy(sam.mask_decoder),
        pixel_mean=sam.pixel_mean.flatten().tolist(),
        pixel_std=sam.pixel_std.flatten().tolist(),
    ).to(sam.pixel_mean.device)


def predictor_with_decoder(
    base: PromptPredictor, state: Dict[str, torch.Tensor], version: Optional[str] = None
) -> PromptPredictor:
    """A predictor that decodes with ``state`` and encodes as ``base`` (shared encoder, same precision), or,
    when ``state`` changes the encoder (LoRA / full finetuning), with a copy of it carrying the change and
    an ``encoder_tag`` that keeps its embeddings apart."""
    sam = sam_with_own_decoder(base.sam)
    load_decoder_state(sam, state)
    tag = encoder_tag(state)
    if tag is not None:
        sam.image_encoder = changed_encoder(base.sam.image_encoder, state, tag).to(base.device)
    predictor = PromptPredictor(sam, base.device, base.precision, decoder_version=version, encoder_tag=tag)
    # the same encoder settings as the base's: batch size, and float16 rounding (its embeddings share the key's kind)
    predictor.encode_batch_size = getattr(base, "encode_batch_size", predictor.encode_batch_size)
    predictor.half_embeddings = getattr(base, "half_embeddings", False)
    if getattr(base, "decoder_graphs", None) is not None:  # graphs of its own: they hold this decoder's weights
        from ..model.decoder_graphs import DecoderGraphs

        predictor.decoder_graphs = DecoderGraphs(sam, predictor.dense_pe)
    if tag is None:  # the base's encoder: its compiled blocks too, once ready (the list is filled in place)
        predictor.compiled_blocks = getattr(base, "compiled_blocks", predictor.compiled_blocks)
        predictor.compiled_sizes = getattr(base, "compiled_sizes", predictor.compiled_sizes)
    return predictor


# Changed encoders by base encoder and tag, alive while any predictor uses them: the gate, the served version
# and a round's start share one copy (and so one int8 copy) of a 90M-parameter encoder instead of one each.
_changed_encoders: "weakref.WeakKeyDictionary[nn.Module, weakref.WeakValueDictionary[str, nn.Module]]" = (
    weakref.WeakKeyDictionary()
)
_changed_lock = threading.Lock()


def changed_encoder(base_encoder: nn.Module, state: Dict[str, torch.Tensor], tag: str) -> nn.Module:
    """The checkpoint's encoder with ``state``'s change (whose digest is ``tag``), made once while in use."""
    with _changed_lock:
        by_tag = _changed_encoders.setdefault(base_encoder, weakref.WeakValueDictionary())
        encoder = by_tag.get(tag)
        if encoder is None:
            encoder = encoder_with_change(base_encoder, state)
            by_tag[tag] = encoder
        return encoder
