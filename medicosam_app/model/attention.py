"""SAM's image-encoder attention through ``torch.nn.functional.scaled_dot_product_attention``.

segment-anything computes ``softmax(q·kᵀ·scale + relative-position bias)·v`` with explicit matrix
products. The same sum handed to the fused kernel gives the same result within float rounding and is faster
where the hardware has it. The weights are untouched: only the modules' class changes, so a checkpoint loads
exactly as before.

The relative-position bias reaches the kernel in one of two *forms*:

- ``mask``: the bias as an additive (B·heads, HW, HW) mask. It is the sum of two small factors; with q, k, v
  and both factors contiguous it is written once (805 MB per global block of ViT-B at 1024², per image).
  Paired runs on a 2-core AMD EPYC: int8 encoder 5.63 → 5.10 s and 5.72 → 5.41 s against a non-contiguous sum.
  Fastest on a CPU (Intel Xeon with AMX, one ViT-B global block: 986 ms against 2,287 ms for ``channels``).
- ``channels``: the bias as extra query and key channels. ``bias[q, (h', w')] = along_h[q, h'] + along_w[q, w']``
  is the dot product of the query's row ``[along_h[q], along_w[q]]`` with the key's one-hot row
  ``[e(h'), e(w')]``, so appending those channels to q and k (and folding the scale into q) gives SAM's
  logits with no mask at all: 64 + 64 + 64 channels in a global block, 64 + 14 + 14 (+4 padding) in a
  windowed one. Without a mask the GPU kernels that never materialise the (HW × HW) matrix
  (memory-efficient, flash) can run: at batch 8 the ``mask`` form writes 3.2 GB of bias per global block.

The relative-position tables are gathered with indices made on the tables' own device: segment-anything's
``get_rel_pos`` builds them on the host, which costs a host-to-device copy and a synchronisation in every
block on a GPU.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention
from torch import nn

BIAS_FORMS = ("mask", "channels")


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """The (q_size, k_size, C) embeddings of every query-key offset along one axis, from the learned (L, C) table.

    The table is resampled (linearly) when it was learned for another size; a shorter axis's coordinates are
    stretched to the longer one's, as MViTv2 / SAM do.
    """
    length = 2 * max(q_size, k_size) - 1
    table = rel_pos
    if rel_pos.shape[0] != length:
        table = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T
    q_stretch, k_stretch = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    queries = torch.arange(q_size, device=rel_pos.device)[:, None] * q_stretch
    keys = torch.arange(k_size, device=rel_pos.device)[None, :] * k_stretch
    offsets = queries - keys + (k_size - 1) * k_stretch
    return table[offsets.long()]


def relative_position_factors(q: torch.Tensor, module: Attention, size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the decomposed relative-position term for the unscaled (G, HW, C) query, G = batch × heads:
    ``along_h`` (G, H, W, H) and ``along_w`` (G, H, W, W); the bias of query (h, w) for key (h', w') is
    ``along_h[:, h, w, h'] + along_w[:, h, w, w']``."""
    height, width = size
    rel_h = relative_position_table(height, height, module.rel_pos_h)
    rel_w = relative_position_table(width, width, module.rel_pos_w)
    grid = q.reshape(q.shape[0], height, width, q.shape[-1])
    # contiguous factors give a contiguous sum: see the module's docstring.
    along_h = torch.einsum("bhwc,hkc->bhwk", grid, rel_h).contiguous()
    along_w = torch.einsum("bhwc,wkc->bhwk", grid, rel_w).contiguous()
    return along_h, along_w


def relative_position_bias(q: torch.Tensor, module: Attention, size: Tuple[int, int]) -> torch.Tensor:
    """The decomposed relative-position term as an additive (G, HW, HW) mask (the ``mask`` form)."""
    height, width = size
    along_h, along_w = relative_position_factors(q, module, size)
    bias = along_h[:, :, :, :, None] + along_w[:, :, :, None, :]
    return bias.reshape(q.shape[0], height * width, height * width)


def with_bias_channels(
    q: torch.Tensor, k: torch.Tensor, module: Attention, size: Tuple[int, int], scale: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(G, HW, C) q and k extended so that ``q'·k'ᵀ = scale·q·kᵀ + bias`` (the ``channels`` form), padded to a
    multiple of 8 channels, which the GPU kernels ask for."""
    height, width = size
    groups, tokens, _ = q.shape
    along_h, along_w = relative_position_factors(q, module, size)
    key_rows = torch.eye(height, device=q.device, dtype=q.dtype).repeat_interleave(width, dim=0)  # token (h', w') → e(h')
    key_cols = torch.eye(width, device=q.device, dtype=q.dtype).repeat(height, 1)  # token (h', w') → e(w')
    query_parts = [q * scale, along_h.reshape(groups, tokens, height).to(q.dtype), along_w.reshape(groups, tokens, width).to(q.dtype)]
    key_parts = [k, key_rows.expand(groups, tokens, height), key_cols.expand(groups, tokens, width)]
    padding = -(q.shape[-1] + height + width) % 8
    if padding:
        query_parts.append(q.new_zeros(groups, tokens, padding))
        key_parts.append(k.new_zeros(groups, tokens, padding))
    return torch.cat(query_parts, dim=-1), torch.cat(key_parts, dim=-1)


class FusedAttention(Attention):
    """:class:`Attention` whose forward pass uses the fused scaled-dot-product kernel (see the module's docstring)."""

    bias_form = "mask"  # per module once switched (:func:`use_fused_attention`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        groups = batch * self.num_heads
        q, k, v = qkv.reshape(3, groups, height * width, -1).unbind(0)  # each (B·heads, HW, head_dim)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        elif self.bias_form == "channels":
            q_extended, k_extended = with_bias_channels(q, k, self, (height, width), self.scale)
            out = F.scaled_dot_product_attention(q_extended, k_extended, v, scale=1.0)
        else:
            bias = relative_position_bias(q, self, (height, width)).to(q.dtype)  # from the unscaled q, as SAM does
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.reshape(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1))


def use_fused_attention(model: nn.Module, bias_form: str = "mask") -> int:
    """Switch every SAM encoder attention module in ``model`` to :class:`FusedAttention` with ``bias_form``
    (modules already switched change form); returns how many."""
    if bias_form not in BIAS_FORMS:
        raise ValueError(f"bias_form must be one of {BIAS_FORMS}, not {bias_form!r}")
    switched = 0
    for module in model.modules():
        if isinstance(module, Attention):
            module.__class__ = FusedAttention
            module.bias_form = bias_form
            switched += 1
    return switched


def bias_form_of(model: nn.Module) -> str:
    """The form of ``model``'s fused attention modules ("sam" when none is switched)."""
    for module in model.modules():
        if isinstance(module, FusedAttention):
            return module.bias_form
    return "sam"
