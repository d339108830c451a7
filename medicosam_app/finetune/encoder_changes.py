"""Finetuning the image encoder too (a GPU's job): low-rank adapters (LoRA) or every encoder weight.

The default round trains only the prompt encoder and mask decoder on cached embeddings, which a CPU can do.
``encoder lora`` adds trainable low-rank factors to each attention block's qkv projection (W + s·B·A, rank
``lora_rank``, B starting at zero so training starts from the checkpoint exactly); ``encoder full`` trains
every encoder weight. Either way the encoder's output changes, so:

* a version stores its encoder change next to its decoder: the LoRA factors (``image_encoder_lora.*``, a
  few hundred kB for ViT-B) or the whole encoder (``image_encoder.*``, ~360 MB for ViT-B);
* serving it builds a copy of the checkpoint's encoder with the change merged in (no runtime cost for LoRA);
* its embeddings are cached under a key of their own, :func:`encoder_tag`, a digest of the change: the
  checkpoint's embeddings stay valid for the semantic decoder and for rollback, and the new encoder's
  are computed as slices are clicked or prefetched.
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Dict, List, Literal, Optional, Tuple

import torch
from torch import nn

EncoderMode = Literal["frozen", "lora", "full"]
ENCODER_MODES: Tuple[str, ...] = ("frozen", "lora", "full")
LORA_PREFIX = "image_encoder_lora."
FULL_PREFIX = "image_encoder."


class LowRankAdapted(nn.Module):
    """``base(x) + scale · x Aᵀ Bᵀ``: a frozen linear layer plus a trainable rank-``rank`` update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.down = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.up = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))  # as nn.Linear initialises; up = 0 keeps W unchanged
        for parameter in base.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.down.t() @ self.up.t()) * self.scale


def _attention_projections(encoder: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(f"blocks.{i}.attn", block.attn) for i, block in enumerate(encoder.blocks)]


def trainable_encoder(
    encoder: nn.Module, mode: str, rank: int = 4, start: Optional[Dict[str, torch.Tensor]] = None,
    alpha: Optional[float] = None,
) -> Tuple[nn.Module, List[nn.Parameter]]:
    """A copy of the checkpoint's ``encoder`` to train in ``mode`` (the loaded one is never touched), and its
    trainable parameters.

    ``start`` is the change of the version training continues from: ``full`` starts from that encoder
    (whatever its change was); ``lora`` continues its LoRA factors when they have this rank, and otherwise
    starts new ones on the checkpoint's encoder (stored factors are always relative to the checkpoint).
    """
    if mode not in ("lora", "full"):
        raise ValueError(f"encoder must be one of {ENCODER_MODES}, not {mode!r}")
    start = start or {}
    if mode == "full":
        trained = encoder_with_change(encoder, start) if changes_encoder(start) else copy.deepcopy(encoder)
        for parameter in trained.parameters():
            parameter.requires_grad_(True)
        return trained.train(), list(trained.parameters())
    trained = copy.deepcopy(encoder)
    for parameter in trained.parameters():
        parameter.requires_grad_(False)
    parameters: List[nn.Parameter] = []
    for name, attention in _attention_projections(trained):
        adapted = LowRankAdapted(attention.qkv, rank, float(alpha if alpha is not None else rank))
        prefix = f"{LORA_PREFIX}{name}.qkv."
        if prefix + "down" in start and tuple(start[prefix + "down"].shape) == tuple(adapted.down.shape):
            with torch.no_grad():
                adapted.down.copy_(start[prefix + "down"])
                adapted.up.copy_(start[prefix + "up"])
            adapted.scale = float(start[prefix + "scale"])
        attention.qkv = adapted
        parameters += [adapted.down, adapted.up]
    return trained, parameters


def continues(start: Dict[str, torch.Tensor], mode: str, rank: int) -> bool:
    """Whether a round in ``mode`` can start from the encoder of the version whose state is ``start``: a
    frozen encoder keeps any change, ``full`` starts from any, ``lora`` only from none or LoRA of this rank
    (its factors are relative to the checkpoint's encoder)."""
    if mode in ("frozen", "full") or not changes_encoder(start):
        return True
    downs = [v for k, v in start.items() if k.startswith(LORA_PREFIX) and k.endswith(".down")]
    return bool(downs) and not any(k.startswith(FULL_PREFIX) for k in start) and all(d.shape[0] == rank for d in downs)


def encoder_change(trained: nn.Module, mode: str) -> Dict[str, torch.Tensor]:
    """What a version stores of a :func:`trainable_encoder` after training (CPU copies). LoRA factors that
    change nothing (B still zero) are no change: the version then keeps the checkpoint's embeddings."""
    if mode == "full":
        return {FULL_PREFIX + k: v.detach().cpu().clone() for k, v in trained.state_dict().items()}
    change: Dict[str, torch.Tensor] = {}
    for name, attention in _attention_projections(trained):
        adapted = attention.qkv
        if not isinstance(adapted, LowRankAdapted):
            raise ValueError("the encoder has no LoRA adapters to store")
        change[f"{LORA_PREFIX}{name}.qkv.down"] = adapted.down.detach().cpu().clone()
        change[f"{LORA_PREFIX}{name}.qkv.up"] = adapted.up.detach().cpu().clone()
        change[f"{LORA_PREFIX}{name}.qkv.scale"] = torch.tensor(adapted.scale)
    if all(not bool(v.any()) for k, v in change.items() if k.endswith(".up")):
        return {}
    return change


def changes_encoder(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith((LORA_PREFIX, FULL_PREFIX)) for k in state)


def encoder_tag(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """A digest of a version's encoder change (None: the checkpoint's encoder): part of its embeddings' key."""
    keys = sorted(k for k in state if k.startswith((LORA_PREFIX, FULL_PREFIX)))
    if not keys:
        return None
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().float().numpy().tobytes())
    return ("lora" if keys[0].startswith(LORA_PREFIX) else "full") + "-" + digest.hexdigest()[:16]


@torch.no_grad()
def encoder_with_change(encoder: nn.Module, state: Dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the checkpoint's ``encoder`` with a version's change merged in (a plain encoder: LoRA costs
    nothing at run time). Refuses a change that does not fit the encoder."""
    changed = copy.deepcopy(encoder)
    full = {k[len(FULL_PREFIX):]: v for k, v in state.items() if k.startswith(FULL_PREFIX)}
    if full:
        changed.load_state_dict(full)
    lora = {k for k in state if k.startswith(LORA_PREFIX)}
    for name, attention in _attention_projections(changed):
        prefix = f"{LORA_PREFIX}{name}.qkv."
        if prefix + "down" not in state:
            continue
        lora -= {prefix + "down", prefix + "up", prefix + "scale"}
        down, up = state[prefix + "down"], state[prefix + "up"]
        weight = attention.qkv.weight
        if up.shape[0] != weight.shape[0] or down.shape[1] != weight.shape[1] or up.shape[1] != down.shape[0]:
            raise ValueError(f"the version's LoRA factors for {name} do not fit this encoder")
        weight += float(state[prefix + "scale"]) * (up.to(weight) @ down.to(weight))
    if lora:
        raise ValueError(f"the version's LoRA factors name blocks this encoder does not have ({sorted(lora)[0]})")
    for parameter in changed.parameters():
        parameter.requires_grad_(False)
    return changed.eval()
