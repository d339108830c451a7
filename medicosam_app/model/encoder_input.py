"""SAM's preprocessing of a batch of images: the longest side resized to the encoder's size, normalised, padded.

On a CPU the resize is segment-anything's own (PIL, bilinear): the reference MedicoSAM was trained with. On a
GPU the uint8 batch is copied once (from pinned memory, without blocking the host) and resized there with
torch's antialiased bilinear filter, which agrees with PIL's within one grey level (a test checks it): PIL
resizes one slice at a time on one host core, 9 ms per slice, while the GPU waits.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from ..geometry.coordinates import SamFrame


def encoder_input(
    sam: Sam, images: Sequence[np.ndarray], device: torch.device, resize_on_device: Optional[bool] = None
) -> torch.Tensor:
    """HxWx3 uint8 images of one size → the encoder's (B, 3, S, S) input (SAM's preprocessing). Encoder
    finetuning calls the encoder on it with gradients.

    ``resize_on_device``: resize on ``device`` after one copy of the uint8 batch (default: on a GPU only).
    """
    device = torch.device(device)
    frame = SamFrame(tuple(images[0].shape[:2]), sam.image_encoder.img_size)  # type: ignore[arg-type]
    if resize_on_device is None:
        resize_on_device = device.type == "cuda"
    if resize_on_device:
        pixels = resized_on_device(np.stack(images), frame.input_size, device)
    else:
        pixels = torch.stack(
            [torch.as_tensor(frame.transform.apply_image(rgb), device=device).permute(2, 0, 1) for rgb in images]
        )
    return sam.preprocess(pixels.float())


def resized_on_device(batch: np.ndarray, size: Sequence[int], device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, h, w) float of whole grey levels, resized on ``device`` (bilinear, antialiased
    when shrinking, rounded as PIL rounds)."""
    host = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == "cuda":
        host = host.pin_memory()
    pixels = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return pixels.round_().clamp_(0, 255)
