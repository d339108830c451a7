"""The encoder's input made on the device (the GPU path, run here on the CPU) agrees with segment-anything's PIL
preprocessing within one grey level, for shrinking and enlarging, on asymmetric images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from medicosam_app.model.encoder_input import encoder_input, resized_on_device
from medicosam_app.model.sam_builder import load_sam


def _asymmetric(shape, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.empty((*shape, 3), dtype=np.uint8)
    image[..., 0] = (rng.random(shape) * 255).astype(np.uint8)
    image[..., 1] = (np.sin(cols / 17.0) * 60 + np.cos(rows / 23.0) * 60 + 128).astype(np.uint8)
    image[..., 2] = np.clip(cols * 255 // shape[1] - rows // 4, 0, 255).astype(np.uint8)  # a ramp: flips show
    image[: shape[0] // 5, : shape[1] // 7] = 255  # a bright corner at top left
    return image


@pytest.mark.parametrize("shape", [(150, 210), (1500, 1100), (600, 800)])
def test_resize_on_the_device_agrees_with_pil_within_one_grey_level(shape):
    image = _asymmetric(shape)
    reference = ResizeLongestSide(1024).apply_image(image)
    ours = resized_on_device(image[None], reference.shape[:2], torch.device("cpu"))[0].permute(1, 2, 0).numpy()
    difference = np.abs(ours - reference.astype(np.float32))
    assert ours.shape == reference.shape
    assert difference.max() <= 1.0, difference.max()
    assert difference.mean() < 0.35, difference.mean()


def test_encoder_input_from_either_resize_agrees(tiny_checkpoint):
    sam = load_sam(tiny_checkpoint)[0].eval()
    images = [_asymmetric((70, 45), seed) for seed in range(2)]
    on_host = encoder_input(sam, images, torch.device("cpu"), resize_on_device=False)
    on_device = encoder_input(sam, images, torch.device("cpu"), resize_on_device=True)
    assert on_host.shape == on_device.shape == (2, 3, sam.image_encoder.img_size, sam.image_encoder.img_size)
    # one grey level after SAM's normalisation (std ≥ 57): ≤ 1/57 per channel; the padding stays exactly zero
    assert float((on_host - on_device).abs().max()) <= 1 / 57.0 + 1e-6
    assert torch.equal(on_host[:, :, :, -5:], on_device[:, :, :, -5:])
