"""The UNETR decoder: shapes, undoing SAM's framing, and initialisation from the released decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medicosam_app.errors import CheckpointError
from medicosam_app.semantic.initial_weights import initial_decoder, load_released_decoder
from medicosam_app.semantic.network import DecoderShape, UNETRDecoder, logits_to_slice


def test_decoder_maps_neck_features_to_class_logits_at_the_encoder_input_size():
    decoder = UNETRDecoder(DecoderShape(num_classes=3, embed_dim=32, initial_features=8, image_size=256))
    logits = decoder(torch.randn(2, 32, 16, 16))
    assert logits.shape == (2, 3, 256, 256)


def test_published_shape_has_the_torch_em_layer_names_and_widths():
    state = UNETRDecoder(DecoderShape(num_classes=2)).state_dict()
    assert state["deconv1.block.0.conv.weight"].shape == (512, 256, 1, 1)
    assert state["base.block.1.weight"].shape == (512, 256, 3, 3)
    assert state["decoder.blocks.0.block.1.weight"].shape == (256, 512, 3, 3)
    assert state["decoder_head.block.1.weight"].shape == (64, 128, 3, 3)
    assert state["out_conv.weight"].shape == (2, 64, 1, 1)


def test_logits_to_slice_crops_the_padding_before_resizing():
    # A 100 x 50 slice fills the top-left 256 x 128 of the 256² frame; the rest is padding.
    logits = torch.zeros(1, 1, 256, 256)
    logits[..., :256, :128] = 1.0
    logits[..., 200:, :64] = 5.0  # bottom-left of the image
    out = logits_to_slice(logits, (256, 128), (100, 50))
    assert out.shape == (1, 1, 100, 50)
    assert out.min() >= 1.0  # no padding (zeros) mixed in
    assert out[0, 0, -1, 0] == pytest.approx(5.0) and out[0, 0, 0, -1] == pytest.approx(1.0)


def test_released_decoder_initialises_everything_but_the_classifier(tmp_path):
    released = UNETRDecoder(DecoderShape(num_classes=2))
    torch.save(released.state_dict(), tmp_path / "vit_b_medicosam_decoder.pt")
    decoder = UNETRDecoder(DecoderShape(num_classes=4))
    before = decoder.out_conv.weight.detach().clone()
    decoder, how = initial_decoder(decoder, released_path=str(tmp_path / "vit_b_medicosam_decoder.pt"))
    assert how == "released"
    for key, value in released.state_dict().items():
        if not key.startswith("out_conv"):
            assert torch.equal(decoder.state_dict()[key], value), key
    assert torch.equal(decoder.out_conv.weight, before) and decoder.out_conv.weight.shape[0] == 4


def test_a_decoder_file_of_another_architecture_is_refused_with_the_reason(tmp_path):
    state = UNETRDecoder(DecoderShape(num_classes=2)).state_dict()
    state["base.block.1.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="shape mismatches.*base.block.1.weight"):
        load_released_decoder(UNETRDecoder(DecoderShape(num_classes=3)), tmp_path / "bad.pt")


def test_without_the_released_file_training_starts_from_scratch(tmp_path):
    _, how = initial_decoder(UNETRDecoder(DecoderShape(num_classes=3)), cache_dir=str(tmp_path))
    assert how == "scratch"
    _, how = initial_decoder(UNETRDecoder(DecoderShape(num_classes=3, embed_dim=32, initial_features=8)))
    assert how == "scratch"  # a test-sized decoder never takes the published weights


def test_dice_per_class_and_class_mapping():
    from medicosam_app.semantic.classes import SemanticClasses
    from medicosam_app.semantic.metrics import dice_per_class

    classes = SemanticClasses.parse('{"liver": 6, "spleen": 1}')
    assert classes.names == ("spleen", "liver") and classes.values == (1, 6)
    label = np.array([[0, 1, 6, 9]])
    indices = classes.to_indices(label)
    assert indices.tolist() == [[0, 1, 2, 0]]  # 9 is not a class: background
    assert classes.to_values(indices).tolist() == [[0, 1, 6, 0]]
    truth = np.array([0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 0, 2, 2, 1])
    scores = dice_per_class(pred, truth, ["a", "b"])
    assert scores["per_class"]["a"] == pytest.approx(2 * 1 / (2 + 2))
    assert scores["per_class"]["b"] == pytest.approx(2 * 2 / (3 + 2))
    assert scores["mean"] == pytest.approx((0.5 + 0.8) / 2)


def test_the_light_path_decodes_at_half_or_quarter_size_with_the_same_weights():
    torch.manual_seed(0)
    decoder = UNETRDecoder(DecoderShape(num_classes=3, embed_dim=32, initial_features=8, image_size=256)).eval()
    features = torch.randn(2, 32, 16, 16)
    with torch.inference_mode():
        full, half, quarter = (decoder(features, d) for d in (1, 2, 4))
    assert full.shape == (2, 3, 256, 256) and half.shape == (2, 3, 128, 128) and quarter.shape == (2, 3, 64, 64)
    assert torch.equal(decoder(features), full)  # the default is the full path, unchanged
    with pytest.raises(ValueError, match="downscale must be one of"):
        decoder(features, 3)
