"""Turn a checkpoint file into a SAM network: safe loading, both published formats, shape from the weights.

The network definition is segment-anything's own; only its sizes are read off the state dict, so the
published ViT-B, a ViT-L/H finetune and the tiny random models the tests make all load the same way.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Mapping, Tuple

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..errors import CheckpointError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
_PATCH_SIZE = 16
_DECODER_HEADS = 8  # not recoverable from weight shapes; every SAM release uses 8
_ENCODER_NAMES = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


@dataclass(frozen=True)
class SamArchitecture:
    """The sizes that define a SAM network, as read from its weights."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: Tuple[int, ...]
    encoder_mlp_ratio: float
    window_size: int
    image_size: int
    prompt_embed_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    iou_head_hidden_dim: int

    @property
    def name(self) -> str:
        """``vit_b``/``vit_l``/``vit_h`` for the standard widths, else ``custom``."""
        return _ENCODER_NAMES.get(self.encoder_embed_dim, "custom")

    def to_dict(self) -> Dict:
        return {"name": self.name, **asdict(self)}


def read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Load a checkpoint without executing code and return a plain SAM state dict.

    Accepts a bare SAM state dict and micro-sam's ``{"model_state": {"sam.…": …}, ...}`` layout.
    """
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or unsafe file
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}). "
            "The file may be truncated or not a weights file; re-download it and check its hash."
        ) from error
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict.")
    state = raw.get("model_state", raw)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'model_state' is a {type(state).__name__}, not a state dict.")
    state = {_strip_prefix(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith("image_encoder.") for k in state) or not any(k.startswith("mask_decoder.") for k in state):
        raise CheckpointError(
            f"{path} is not a SAM checkpoint: it has no image_encoder.* / mask_decoder.* weights "
            f"(first keys: {list(state)[:3]})."
        )
    return {k: v for k, v in state.items() if k.startswith(_SAM_PREFIXES)}


def _strip_prefix(key: str) -> str:
    return key[len("sam.") :] if key.startswith("sam.") else key


def derive_architecture(state: Mapping[str, torch.Tensor]) -> SamArchitecture:
    """Read the network sizes off the weight shapes."""
    try:
        embed_dim = state["image_encoder.patch_embed.proj.weight"].shape[0]
        blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
        rel_rows = [state[f"image_encoder.blocks.{b}.attn.rel_pos_h"].shape for b in blocks]
        grid = state["image_encoder.pos_embed"].shape[1]
        global_blocks = tuple(b for b, shape in zip(blocks, rel_rows) if shape[0] == 2 * grid - 1)
        windowed = [shape[0] for shape in rel_rows if shape[0] != 2 * grid - 1]
        head_dim = rel_rows[0][1]
        decoder_layers = {
            int(m.group(1)) for k in state if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))
        }
        return SamArchitecture(
            encoder_embed_dim=embed_dim,
            encoder_depth=len(blocks),
            encoder_num_heads=embed_dim // head_dim,
            encoder_global_attn_indexes=global_blocks,
            encoder_mlp_ratio=state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
            window_size=(windowed[0] + 1) // 2 if windowed else 0,
            image_size=grid * _PATCH_SIZE,
            prompt_embed_dim=state["image_encoder.neck.0.weight"].shape[0],
            mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            decoder_depth=len(decoder_layers),
            decoder_mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        )
    except (KeyError, IndexError, ZeroDivisionError) as error:
        raise CheckpointError(f"SAM weights are incomplete: cannot read the architecture ({error!r} missing).") from error


def build_sam(arch: SamArchitecture) -> Sam:
    """An untrained SAM network with the given sizes (segment-anything's modules)."""
    grid = arch.image_size // _PATCH_SIZE
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=arch.encoder_mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=_PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=_DECODER_HEADS,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def load_sam(path: Path) -> Tuple[Sam, SamArchitecture]:
    """Build the network the checkpoint describes and load its weights strictly, in eval mode."""
    state = read_state_dict(Path(path))
    arch = derive_architecture(state)
    sam = build_sam(arch)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match a SAM {arch.name} network: {error}") from error
    return sam.eval(), arch
