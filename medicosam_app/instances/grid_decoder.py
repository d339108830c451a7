"""SAM's mask decoder for many point prompts on one slice: the same logits with a fraction of the work.

segment-anything's ``MaskDecoder`` copies the 64×64×256 image embedding once per prompt and runs every
linear layer on every copy. For a grid of prompts on one slice most of that is the same arithmetic again,
or arithmetic that can be done in a smaller space first:

- In the first transformer block the image tokens are still the same for every prompt, so the projections
  of the image side (keys and values of token→image attention, queries of image→token attention) are
  computed once per slice.
- Attention with the image on one side and the 7 prompt tokens on the other is reassociated so the
  4096 image tokens meet a few small matrices rather than a 256→128 projection each:
  ``(x·Wₖᵀ)·q = x·(Wₖᵀ·q)`` for scores, ``Σ p·(x·Wᵥᵀ) = (Σ p·x)·Wᵥᵀ`` for token→image values (each row of
  ``p`` sums to 1), and ``(A·V)·Wₒᵀ = A·(V·Wₒᵀ)`` for the image→token output, whose rank is at most
  heads × tokens = 56.
- Predicted IoU comes from the transformer alone, so the upscaling to 256² runs only for the prompts a
  caller keeps (:meth:`GridMaskDecoder.masks`).

Every step is the same sum in another order: the logits equal segment-anything's to float rounding
(tests/instances/test_grid_decoder.py compares them at the tiny and at the ViT-B shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention

from ..geometry.coordinates import SamFrame


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) → (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) → (B, N, heads · d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _per_head(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """A projection's (heads · d, C) weight as (heads, d, C)."""
    return weight.reshape(heads, weight.shape[0] // heads, weight.shape[1])


def softmax_last(x: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last axis (the 7 prompt tokens), in place: torch's kernel is slow when that
    axis is this short and the others are long."""
    x = x - x.amax(dim=-1, keepdim=True)
    x.exp_()
    return x.div_(x.sum(dim=-1, keepdim=True))


def tokens_attend_to_image(attention: Attention, queries: torch.Tensor, image: torch.Tensor, image_with_pe: torch.Tensor) -> torch.Tensor:
    """``attention(q=queries, k=image_with_pe, v=image)`` for per-prompt ``image`` (B, HW, C), without
    projecting the image: scores through ``Wₖᵀ·q``, values through the attention-weighted image."""
    h = attention.num_heads
    q = _heads(attention.q_proj(queries), h)  # (B, h, T, d)
    b, _, t, d = q.shape
    w_k, w_v = _per_head(attention.k_proj.weight, h), _per_head(attention.v_proj.weight, h)
    b_k, b_v = attention.k_proj.bias.reshape(h, 1, d), attention.v_proj.bias.reshape(h, 1, d)
    q_in_image_space = torch.einsum("bhtd,hdc->bhtc", q, w_k).reshape(b, h * t, -1) / math.sqrt(d)
    scores = torch.baddbmm(
        ((q * b_k).sum(-1) / math.sqrt(d)).reshape(b, h * t, 1), q_in_image_space, image_with_pe.transpose(1, 2)
    )
    weights = torch.softmax(scores, dim=-1)  # (B, h·T, HW): softmax over the long axis is fast
    pooled = torch.bmm(weights, image).reshape(b, h, t, -1)  # (B, h, T, C)
    values = torch.einsum("bhtc,hdc->bhtd", pooled, w_v) + b_v  # rows of weights sum to 1
    return attention.out_proj(_merge(values))


def image_attends_to_tokens(
    attention: Attention,
    image: torch.Tensor,
    image_with_pe: torch.Tensor,
    tokens_q: torch.Tensor,
    tokens_v: torch.Tensor,
    shared_q: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``image + attention(q=image_with_pe, k=tokens_q, v=tokens_v)``: (B, HW, C).

    ``shared_q`` gives the image queries already projected for every prompt (1, h, HW, d); else scores go
    through ``W_qᵀ·k``. The output projection is applied to the small value matrix before the attention
    weights (rank heads × tokens), not to the 4096 image tokens."""
    h = attention.num_heads
    k = _heads(attention.k_proj(tokens_q), h)  # (B, h, T, d)
    v = _heads(attention.v_proj(tokens_v), h)
    b, _, t, d = k.shape
    n = image_with_pe.shape[1]
    if shared_q is not None:
        scores = torch.matmul(shared_q, k.transpose(-1, -2)).permute(0, 2, 1, 3).reshape(b, n, h * t)
        scores = scores / math.sqrt(d)
    else:
        w_q, b_q = _per_head(attention.q_proj.weight, h), attention.q_proj.bias.reshape(h, 1, d)
        k_in_image_space = torch.einsum("bhtd,hdc->bhtc", k, w_q).reshape(b, h * t, -1) / math.sqrt(d)
        bias = ((b_q[None] * k).sum(-1) / math.sqrt(d)).reshape(b, 1, h * t)  # b_q · k per (head, token)
        scores = torch.baddbmm(bias, image_with_pe, k_in_image_space.transpose(1, 2))  # (B, HW, h·T)
    weights = softmax_last(scores.view(b, n, h, t)).view(b, n, h * t)
    w_o = attention.out_proj.weight.reshape(attention.out_proj.weight.shape[0], h, d)  # (C, h, d)
    v_out = torch.einsum("bhtd,chd->bhtc", v, w_o).reshape(b, h * t, -1)  # (B, h·T, C)
    return torch.baddbmm(image + attention.out_proj.bias, weights, v_out)


@dataclass
class DecodedPrompts:
    """The transformer's output for a batch of prompts: what :meth:`GridMaskDecoder.masks` needs, and IoUs."""

    predicted_iou: torch.Tensor  # (B, 3)
    mask_tokens: torch.Tensor  # (B, 3, C)
    image: torch.Tensor  # (B, HW, C)


class GridMaskDecoder:
    """Single-point prompts (three masks each) against one image embedding, like
    ``PromptPredictor.decode_points`` but sharing the work between prompts."""

    def __init__(self, sam: Sam, features: torch.Tensor, image_pe: torch.Tensor, original_size: Tuple[int, int]) -> None:
        self.sam = sam
        self.frame = SamFrame(tuple(original_size), sam.image_encoder.img_size)  # type: ignore[arg-type]
        decoder, transformer = sam.mask_decoder, sam.mask_decoder.transformer
        self.decoder, self.transformer = decoder, transformer
        device = features.device
        with torch.inference_mode():
            dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            src = features + dense
            _, c, self.height, self.width = src.shape
            self.image = src.flatten(2).transpose(1, 2)  # (1, HW, C)
            self.image_pe = image_pe.to(device).flatten(2).transpose(1, 2)
            first = transformer.layers[0]
            h = first.cross_attn_token_to_image.num_heads
            with_pe = self.image + self.image_pe
            self.first_keys = _heads(first.cross_attn_token_to_image.k_proj(with_pe), h)
            self.first_values = _heads(first.cross_attn_token_to_image.v_proj(self.image), h)
            self.first_image_queries = _heads(first.cross_attn_image_to_token.q_proj(with_pe), first.cross_attn_image_to_token.num_heads)
            self.output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)

    @torch.inference_mode()
    def transform(self, points_xy: np.ndarray) -> DecodedPrompts:
        """(B, 2) pixel points → predicted IoUs of the three masks each, and what their masks are made of."""
        device = self.image.device
        coords = torch.as_tensor(self.frame.points(points_xy), dtype=torch.float, device=device)[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=device)
        sparse, _ = self.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        tokens = torch.cat((self.output_tokens.expand(sparse.shape[0], -1, -1), sparse), dim=1)
        queries, image = self._first_block(tokens)
        for layer in self.transformer.layers[1:]:
            queries, image = self._block(layer, queries, image, tokens)
        final = self.transformer.final_attn_token_to_image
        attended = tokens_attend_to_image(final, queries + tokens, image, image + self.image_pe)
        queries = self.transformer.norm_final_attn(queries + attended)
        iou = self.decoder.iou_prediction_head(queries[:, 0, :])
        return DecodedPrompts(iou[:, 1:], queries[:, 2 : 1 + self.decoder.num_mask_tokens, :], image)

    @torch.inference_mode()
    def masks(self, decoded: DecodedPrompts, keep: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (K, 3, 256, 256) of the prompts ``keep`` selects (a boolean or index tensor)."""
        image, tokens = decoded.image[keep], decoded.mask_tokens[keep]
        b, c = image.shape[0], image.shape[2]
        upscaled = self.decoder.output_upscaling(image.transpose(1, 2).reshape(b, c, self.height, self.width))
        hyper = torch.stack(
            [mlp(tokens[:, i, :]) for i, mlp in enumerate(self.decoder.output_hypernetworks_mlps[1:])], dim=1
        )
        _, c_up, h_up, w_up = upscaled.shape
        return (hyper @ upscaled.reshape(b, c_up, h_up * w_up)).reshape(b, -1, h_up, w_up)

    def _first_block(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The first two-way block, with the image side's projections shared by every prompt."""
        layer = self.transformer.layers[0]
        queries = layer.norm1(layer.self_attn(q=tokens, k=tokens, v=tokens))  # no PE in the first block
        t2i = layer.cross_attn_token_to_image
        q = _heads(t2i.q_proj(queries + tokens), t2i.num_heads)
        weights = torch.softmax(torch.matmul(q, self.first_keys.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
        queries = layer.norm2(queries + t2i.out_proj(_merge(torch.matmul(weights, self.first_values))))
        queries = layer.norm3(queries + layer.mlp(queries))
        updated = image_attends_to_tokens(
            layer.cross_attn_image_to_token, self.image, self.image + self.image_pe, queries + tokens, queries,
            shared_q=self.first_image_queries,
        )
        return queries, layer.norm4(updated)

    def _block(self, layer, queries: torch.Tensor, image: torch.Tensor, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        q = queries + tokens
        queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
        image_with_pe = image + self.image_pe
        attended = tokens_attend_to_image(layer.cross_attn_token_to_image, queries + tokens, image, image_with_pe)
        queries = layer.norm2(queries + attended)
        queries = layer.norm3(queries + layer.mlp(queries))
        updated = image_attends_to_tokens(layer.cross_attn_image_to_token, image, image_with_pe, queries + tokens, queries)
        return queries, layer.norm4(updated)
