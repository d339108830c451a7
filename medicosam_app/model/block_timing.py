"""Timing the encoder's transformer blocks on random tokens: what the speed choices (attention form, compile) rank by."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, ContextManager, List, Sequence

import numpy as np
import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT


def encoder_tokens(encoder: ImageEncoderViT, batch: int, device: torch.device) -> torch.Tensor:
    """(batch, 64, 64, C) random tokens of the encoder's grid, from a generator of their own (measuring must not move
    the global random state that training runs on)."""
    side = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, side, side, encoder.neck[0].in_channels, generator=generator).to(device)


@torch.inference_mode()
def blocks_ms(
    blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]], tokens: torch.Tensor, repeats: int = 3,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext, timer: Callable[[], float] = time.perf_counter,
) -> float:
    """Median milliseconds of ``blocks`` run in turn on ``tokens``, after one warm-up run (kernels chosen, caches
    filled, a compiled block compiled)."""
    device = tokens.device
    times: List[float] = []
    with autocast():
        for attempt in range(repeats + 1):
            _synchronize(device)
            started = timer()
            x = tokens
            for block in blocks:
                x = block(x)
            _synchronize(device)
            if attempt:
                times.append(timer() - started)
    return round(1000 * float(np.median(times)), 2)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
