"""The grid decoder reorders SAM's mask-decoder arithmetic; its logits and IoUs must be segment-anything's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medicosam_app.instances.grid_decoder import GridMaskDecoder
from medicosam_app.model.predictor import ImageEmbedding, PromptPredictor
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM
from medicosam_app.model.sam_builder import build_sam


@pytest.mark.parametrize("architecture", [TINY_SAM, VIT_B_SAM], ids=["tiny", "vit_b"])
def test_grid_decoder_gives_segment_anythings_logits_and_ious(architecture):
    torch.manual_seed(0)
    sam = build_sam(architecture)
    for parameter in sam.mask_decoder.parameters():  # random, but not SAM's near-zero init: every term counts
        parameter.data.normal_(0, 0.05)
    predictor = PromptPredictor(sam, device=torch.device("cpu"), precision="fp32")
    channels = sam.prompt_encoder.embed_dim
    embedding = ImageEmbedding(torch.randn(1, channels, 64, 64), (300, 220))  # not square: padding in the frame
    points = np.array([[10.0, 20.0], [200.0, 290.0], [110.5, 150.25], [0.0, 0.0], [219.0, 5.0]])
    expected_logits, expected_iou = predictor.decode_points(embedding, points)

    grid = GridMaskDecoder(sam, embedding.features, predictor._dense_pe, embedding.original_size)
    decoded = grid.transform(points)
    torch.testing.assert_close(decoded.predicted_iou, expected_iou, rtol=1e-4, atol=1e-4)
    keep = torch.tensor([True, False, True, True, False])
    logits = grid.masks(decoded, keep)
    assert logits.shape == (3, 3, 256, 256)
    torch.testing.assert_close(logits, expected_logits[keep], rtol=1e-3, atol=1e-3)
    assert ((logits > 0) == (expected_logits[keep] > 0)).float().mean() > 0.9999
