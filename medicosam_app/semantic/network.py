"""The UNETR decoder of medico-sam's semantic model, run on the frozen SAM encoder's neck output.

Shape (REFERENCE §4): neck features C×64×64 → conv block → three upsampling stages that each take a
deconvolved copy of the features (no encoder skip connections) → one more ×2 upsampling, joined with a
fourth deconvolution → 1×1 conv to N classes at the encoder's input size (1024²).

Module and parameter names follow torch-em's ``UNETR`` (``use_skip_connection=False``, interpolation
upsampling), the implementation medico-sam trained with, so the released decoder's state dict loads by name.
``initial_features`` is 64 in the published model; tests use a narrower decoder on small encoders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


DOWNSCALES = (1, 2, 4)  # decode at full, half or quarter of the encoder's input size


@dataclass(frozen=True)
class DecoderShape:
    """Everything that fixes the decoder's parameter shapes; stored with every trained version."""

    num_classes: int  # including background
    embed_dim: int = 256  # channels of the SAM neck output
    initial_features: int = 64
    image_size: int = 1024  # the encoder's input size; logits come out at this size

    @property
    def features(self) -> List[int]:
        """Channels per decoder level, widest first: [512, 256, 128, 64] for the published model."""
        return [self.initial_features * 2**level for level in range(3, -1, -1)]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "DecoderShape":
        return cls(**{key: values[key] for key in ("num_classes", "embed_dim", "initial_features", "image_size")})


class ConvBlock(nn.Module):
    """Two (instance norm → 3×3 conv → ReLU) layers."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.InstanceNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.InstanceNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Upsample(nn.Module):
    """×2 bilinear interpolation, then a 1×1 conv to the new channel count."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 2) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, scale_factor: Optional[int] = None) -> torch.Tensor:
        scale = self.scale_factor if scale_factor is None else scale_factor
        if scale != 1:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        return self.conv(x)


class Conv3x3(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DeconvBlock(nn.Module):
    """Upsample ×2 → 3×3 conv → batch norm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Upsample(in_channels, out_channels),
            Conv3x3(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, scale_factor: Optional[int] = None) -> torch.Tensor:
        x = self.block[0](x, scale_factor)
        for layer in self.block[1:]:
            x = layer(x)
        return x


class UpsamplingPath(nn.Module):
    """Per level: upsample, concatenate (the centre channels of) the matching deconvolved features, conv block."""

    def __init__(self, features: Sequence[int]) -> None:
        super().__init__()
        pairs = list(zip(features[:-1], features[1:]))
        self.blocks = nn.ModuleList([ConvBlock(wide, narrow) for wide, narrow in pairs])
        self.samplers = nn.ModuleList([Upsample(wide, narrow) for wide, narrow in pairs])

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor], scales: Sequence[Optional[int]] = ()) -> torch.Tensor:
        scales = list(scales) + [None] * (len(self.blocks) - len(scales))
        for block, sampler, skip, scale in zip(self.blocks, self.samplers, skips, scales):
            x = sampler(x, scale)
            x = block(torch.cat([x, centre_channels(skip, x.shape[1])], dim=1))
        return x


def centre_channels(x: torch.Tensor, count: int) -> torch.Tensor:
    """The middle ``count`` channels of ``x``.

    The deconvolved features have twice the channels the decoder joins with; torch-em's decoder centre-crops
    every dimension to match, channels included. Done the same here so released weights see what they
    were trained with.
    """
    start = (x.shape[1] - count) // 2
    return x[:, start : start + count]


class UNETRDecoder(nn.Module):
    """Encoder features (B, C, 64, 64) → class logits (B, N, image_size, image_size)."""

    def __init__(self, shape: DecoderShape) -> None:
        super().__init__()
        self.shape = shape
        f = shape.features
        self.deconv1 = DeconvBlock(shape.embed_dim, f[0])
        self.deconv2 = DeconvBlock(f[0], f[1])
        self.deconv3 = DeconvBlock(f[1], f[2])
        self.deconv4 = DeconvBlock(f[2], f[3])
        self.base = ConvBlock(shape.embed_dim, f[0])
        self.decoder = UpsamplingPath(f)
        self.deconv_out = Upsample(f[-1], f[-1])
        self.decoder_head = ConvBlock(2 * f[-1], f[-1])
        self.out_conv = nn.Conv2d(f[-1], shape.num_classes, 1)

    def forward(self, features: torch.Tensor, downscale: int = 1) -> torch.Tensor:
        """Logits at ``image_size / downscale``. ``downscale`` 2 or 4 skips the last one or two ×2
        upsamplings of both branches, so the widest layers run on 4× or 16× fewer pixels (the light path
        for CPUs; the same weights, logits to be resized by the caller)."""
        if downscale not in DOWNSCALES:
            raise ValueError(f"downscale must be one of {DOWNSCALES}, not {downscale}")
        skip_last = {1: 0, 2: 1, 4: 2}[downscale]  # how many of the finest ×2 steps become ×1
        deconv_scales = [None, None, 1 if skip_last >= 2 else None, 1 if skip_last >= 1 else None]
        z9 = self.deconv1(features, deconv_scales[0])
        z6 = self.deconv2(z9, deconv_scales[1])
        z3 = self.deconv3(z6, deconv_scales[2])
        z0 = self.deconv4(z3, deconv_scales[3])
        x = self.decoder(self.base(features), [z9, z6, z3], scales=[None, None, deconv_scales[2]])
        x = self.decoder_head(torch.cat([self.deconv_out(x, deconv_scales[3]), z0], dim=1))
        return self.out_conv(x)


def logits_to_slice(logits: torch.Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> torch.Tensor:
    """Undo SAM's framing: crop the padding off (B, N, S, S) logits, resize to the slice's own size."""
    logits = logits[..., : input_size[0], : input_size[1]]
    return F.interpolate(logits, size=tuple(original_size), mode="bilinear", align_corners=False)
