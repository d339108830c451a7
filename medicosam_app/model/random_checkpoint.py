"""SAM checkpoints with random weights, saved in the published formats.

The real MedicoSAM weights cannot be downloaded on every machine; tests and benchmarks make their own
checkpoints here: a tiny one for fast tests and a ViT-B-shaped one for honest timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from .sam_builder import SamArchitecture, build_sam

TINY_SAM = SamArchitecture(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    encoder_mlp_ratio=2.0,
    window_size=14,
    image_size=1024,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_depth=1,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)
"""Same input size and preprocessing as ViT-B, a few hundred thousand parameters."""

VIT_B_SAM = SamArchitecture(
    encoder_embed_dim=768,
    encoder_depth=12,
    encoder_num_heads=12,
    encoder_global_attn_indexes=(2, 5, 8, 11),
    encoder_mlp_ratio=4.0,
    window_size=14,
    image_size=1024,
    prompt_embed_dim=256,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=2048,
    iou_head_hidden_dim=256,
)
"""The published MedicoSAM shape (SAM ViT-B)."""


def write_random_checkpoint(
    path: Path,
    arch: SamArchitecture = TINY_SAM,
    seed: int = 0,
    layout: Literal["sam", "micro_sam"] = "sam",
) -> Path:
    """Save a randomly initialised SAM as a plain state dict (``sam``) or micro-sam's layout."""
    torch.manual_seed(seed)
    sam = build_sam(arch)
    with torch.no_grad():  # SAM zero-initialises relative positions; random ones make the test model less trivial
        for name, parameter in sam.named_parameters():
            if name.endswith(("rel_pos_h", "rel_pos_w")):
                parameter.normal_(0.0, 0.02)
    state = sam.state_dict()
    payload = state if layout == "sam" else {"model_state": {f"sam.{k}": v for k, v in state.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path
