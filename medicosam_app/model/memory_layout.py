"""Channels-last layout for the convolutions a click runs (mask upscaling, mask-prompt downscaling).

oneDNN's transposed convolutions are much faster on CPU in channels-last layout (SAM ViT-B's mask
decoder: 82 → 61 ms per call on 2 cores); the values are the same within float rounding (~1e-7).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import Sam


def use_channels_last_decoder(sam: Sam) -> None:
    sam.mask_decoder.output_upscaling.to(memory_format=torch.channels_last)
    sam.prompt_encoder.mask_downscaling.to(memory_format=torch.channels_last)
