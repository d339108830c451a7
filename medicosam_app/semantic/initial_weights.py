"""Where a new semantic decoder starts: the released MedicoSAM decoder when it is on disk, else scratch.

The released decoder was trained for 2 classes (foreground/background), so everything but the final
1×1 conv is taken from it; the classifier is initialised fresh for this app's N classes.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Tuple

import torch

from ..errors import CheckpointError, ModelUnavailableError
from ..model.checkpoints import MEDICOSAM_DECODER, resolve_checkpoint
from .network import UNETRDecoder

logger = logging.getLogger(__name__)

_CLASSIFIER = ("out_conv.weight", "out_conv.bias")


def load_released_decoder(decoder: UNETRDecoder, path: os.PathLike) -> None:
    """Copy all but the classifier from a released decoder state dict; raise if the architectures differ."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors all mean "not a state dict we can read"
        raise CheckpointError(f"Cannot read the released decoder {path}: {error}") from error
    if isinstance(state, dict) and "decoder_state" in state:  # micro-sam's combined layout
        state = state["decoder_state"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a decoder state dict.")
    state = {key.removeprefix("module."): value for key, value in state.items() if key not in _CLASSIFIER}
    own = decoder.state_dict()
    wrong_shape = [key for key, value in state.items() if key in own and own[key].shape != value.shape]
    missing = sorted(set(own) - set(state) - set(_CLASSIFIER))
    unexpected = sorted(set(state) - set(own))
    if wrong_shape or missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit this decoder ({decoder.shape}): "
            f"shape mismatches {wrong_shape[:5]}, missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    decoder.load_state_dict(state, strict=False)


def initial_decoder(
    decoder: UNETRDecoder,
    released_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    allow_download: bool = False,
) -> Tuple[UNETRDecoder, str]:
    """Initialise ``decoder`` in place and say how: ``"released"`` or ``"scratch"``.

    The released decoder only fits the published shape (256-channel neck, 64 initial features); for
    other shapes, or when the file is not there, training starts from scratch.
    """
    if decoder.shape.embed_dim != 256 or decoder.shape.initial_features != 64:
        return decoder, "scratch"
    try:
        resolved = resolve_checkpoint(MEDICOSAM_DECODER, released_path, cache_dir, allow_download)
    except ModelUnavailableError as error:
        logger.info("Semantic decoder starts from scratch: %s", error)
        return decoder, "scratch"
    load_released_decoder(decoder, resolved.path)
    return decoder, "released"
