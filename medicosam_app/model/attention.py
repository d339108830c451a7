"""SAM's image-encoder attention through ``torch.nn.functional.scaled_dot_product_attention``.

segment-anything computes ``softmax(q·kᵀ·scale + relative-position bias)·v`` with explicit matrix
products. The same sum handed to the fused kernel (flash / memory-efficient on GPU, the fused CPU
kernel otherwise) gives the same result within float rounding and is faster where the hardware has it.
The weights are untouched: only the modules' class changes, so a checkpoint loads exactly as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn


def relative_position_bias(q: torch.Tensor, module: Attention, size: tuple) -> torch.Tensor:
    """The decomposed relative-position term of MViTv2 / SAM as an additive (B·heads, HW, HW) mask."""
    height, width = size
    rel_h = get_rel_pos(height, height, module.rel_pos_h)
    rel_w = get_rel_pos(width, width, module.rel_pos_w)
    batch, _, dim = q.shape
    grid = q.reshape(batch, height, width, dim)
    along_h = torch.einsum("bhwc,hkc->bhwk", grid, rel_h)  # (B, H, W, H)
    along_w = torch.einsum("bhwc,wkc->bhwk", grid, rel_w)  # (B, H, W, W)
    bias = along_h[:, :, :, :, None] + along_w[:, :, :, None, :]
    return bias.reshape(batch, height * width, height * width)


class FusedAttention(Attention):
    """:class:`Attention` whose forward pass uses the fused scaled-dot-product kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, HW, head_dim)
        bias = None
        if self.use_rel_pos:
            flat_q = q.reshape(batch * self.num_heads, height * width, -1)
            bias = relative_position_bias(flat_q, self, (height, width))  # from the unscaled q, as SAM does
            bias = bias.reshape(batch, self.num_heads, height * width, height * width).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.reshape(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1))


def use_fused_attention(model: nn.Module) -> int:
    """Switch every SAM encoder attention module in ``model`` to :class:`FusedAttention`; returns how many."""
    switched = 0
    for module in model.modules():
        if type(module) is Attention:
            module.__class__ = FusedAttention
            switched += 1
    return switched
