"""Fused attention, autocast precision and batched encoding give SAM's embedding (within stated tolerances)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from medicosam_app.model.attention import (
    FusedAttention,
    bias_form_of,
    relative_position_table,
    use_fused_attention,
)
from medicosam_app.model.provider import ModelProvider
from medicosam_app.model.predictor import PromptPredictor, resolve_precision
from medicosam_app.model.sam_builder import load_sam

FUSED_TOLERANCE = 1e-4  # float32 rounding of a different summation order


@pytest.fixture(scope="module")
def sam(tiny_checkpoint):
    return load_sam(tiny_checkpoint)[0].eval()


def _images(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.random((150, 210, 3)) * 255).astype(np.uint8) for _ in range(count)]


def test_fused_attention_matches_sams_attention(sam):
    fused = copy.deepcopy(sam)
    assert use_fused_attention(fused) == len(sam.image_encoder.blocks)
    assert all(type(block.attn) is FusedAttention for block in fused.image_encoder.blocks)
    image = _images(1)[0]
    reference = PromptPredictor(sam).encode(image).features
    ours = PromptPredictor(fused).encode(image).features
    assert torch.allclose(ours, reference, atol=FUSED_TOLERANCE), float((ours - reference).abs().max())


@pytest.mark.parametrize("bias_form", ["mask", "channels"])
@pytest.mark.parametrize("batch, size", [(2, (14, 14)), (1, (16, 24))])
def test_fused_attention_module_matches_sams_per_image_and_head(batch, size, bias_form):
    """Several images (or windows) and heads in one call, on a non-square grid: a mix-up of batch, head or axis
    order in the reshaped q, k, v or in the bias would move numbers between images or transpose the grid."""
    from segment_anything.modeling.image_encoder import Attention

    torch.manual_seed(3)
    reference = Attention(48, num_heads=4, use_rel_pos=True, input_size=size).eval()
    torch.nn.init.normal_(reference.rel_pos_h, std=0.5)
    torch.nn.init.normal_(reference.rel_pos_w, std=0.5)
    fused = copy.deepcopy(reference)
    use_fused_attention(fused, bias_form)
    assert bias_form_of(fused) == bias_form
    x = torch.randn(batch, *size, 48)
    with torch.no_grad():
        expected, ours = reference(x), fused(x)
        alone = fused(x[-1:])
    assert torch.allclose(ours, expected, atol=FUSED_TOLERANCE), float((ours - expected).abs().max())
    assert torch.allclose(alone, expected[-1:], atol=FUSED_TOLERANCE)


@pytest.mark.parametrize("q_size, k_size, learned", [(14, 14, 27), (16, 24, 47), (24, 16, 47), (10, 10, 27)])
def test_relative_position_table_is_sams(q_size, k_size, learned):
    """Square and stretched axes, and a table learned for another size (resampled): SAM's ``get_rel_pos`` values."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    table = torch.randn(learned, 8, generator=torch.Generator().manual_seed(q_size))
    assert torch.equal(relative_position_table(q_size, k_size, table), get_rel_pos(q_size, k_size, table))


def test_bias_forms_switch_and_give_the_same_embedding(sam):
    """The ``channels`` form (the bias as extra q/k channels, for the GPU kernels without a mask) embeds a
    whole non-square image as the ``mask`` form does; switching back restores the form."""
    fused = copy.deepcopy(sam)
    use_fused_attention(fused, "mask")
    image = _images(1)[0]
    as_mask = PromptPredictor(fused).encode(image).features
    assert use_fused_attention(fused, "channels") == len(sam.image_encoder.blocks)
    assert {block.attn.bias_form for block in fused.image_encoder.blocks} == {"channels"}
    as_channels = PromptPredictor(fused).encode(image).features
    assert torch.allclose(as_channels, as_mask, atol=FUSED_TOLERANCE), float((as_channels - as_mask).abs().max())
    with pytest.raises(ValueError, match="bias_form"):
        use_fused_attention(fused, "diagonal")
    assert bias_form_of(sam) == "sam"


def test_fused_attention_gives_the_same_masks(sam):
    fused = copy.deepcopy(sam)
    use_fused_attention(fused)
    image = _images(1)[0]
    points, labels = np.array([[100.0, 60.0]]), np.array([1])
    plain, quick = PromptPredictor(sam), PromptPredictor(fused)
    a = plain.predict(plain.encode(image), points, labels)
    b = quick.predict(quick.encode(image), points, labels)
    agreement = (a.mask == b.mask).mean()
    assert agreement > 0.999, agreement


def test_a_batch_encodes_like_single_images(sam):
    predictor = PromptPredictor(sam)
    images = _images(3, seed=1)
    batch = predictor.encode_batch(images)
    for image, embedding in zip(images, batch):
        single = predictor.encode(image)
        assert embedding.features.shape == single.features.shape == (1, *single.features.shape[1:])
        assert torch.allclose(embedding.features, single.features, atol=1e-5)


def test_a_batch_needs_one_image_size(sam):
    with pytest.raises(ValueError, match="one size"):
        PromptPredictor(sam).encode_batch([_images(1)[0], _images(1)[0][:100]])


def test_precision_defaults_to_float32_on_cpu_and_refuses_fp16_there():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("int3", torch.device("cpu"))
    assert resolve_precision("int8", torch.device("cpu")) == "int8"
    with pytest.raises(ValueError, match="int8 is dynamic quantisation for CPUs"):
        resolve_precision("int8", torch.device("cuda"))


def test_int8_embeds_with_a_shared_quantised_copy_and_leaves_the_encoder_alone(sam):
    """int8: the encoder's Linear layers quantised in a copy made once; the embedding stays close to fp32's."""
    image = _images(1)[0]
    reference = PromptPredictor(sam).encode(image).features
    int8 = PromptPredictor(sam, precision="int8")
    quantised = int8.encode(image).features
    assert quantised.dtype == torch.float32 and quantised.shape == reference.shape
    relative = float((quantised - reference).norm() / reference.norm())
    assert relative < 0.1, relative
    assert type(sam.image_encoder.blocks[0].attn.qkv) is torch.nn.Linear  # fp32 users keep the float layers
    assert type(int8.encoder.blocks[0].attn.qkv) is not torch.nn.Linear
    assert PromptPredictor(sam, precision="int8").encoder is int8.encoder  # one copy per encoder
    calls = []
    paused = int8.encode_batch([image], between_blocks=lambda: calls.append(1))[0]  # background prefetch's path
    assert len(calls) == len(sam.image_encoder.blocks) and torch.equal(paused.features, quantised)


def test_bf16_autocast_embedding_stays_close(sam):
    """bf16 is offered on CPU too; its embedding differs from fp32 only by bf16 rounding."""
    image = _images(1)[0]
    reference = PromptPredictor(sam).encode(image).features
    half = PromptPredictor(sam, precision="bf16").encode(image).features
    assert half.dtype == torch.float32  # stored and decoded in float32
    relative = float((half - reference).norm() / reference.norm())
    assert relative < 0.05, relative


def test_provider_reports_precision_and_keys_embeddings_by_it(tiny_checkpoint):
    fp32 = ModelProvider(str(tiny_checkpoint), allow_download=False)
    bf16 = ModelProvider(str(tiny_checkpoint), allow_download=False, precision="bf16")
    fp32.load()
    assert fp32.status["precision"] == "fp32" and fp32.status["fused_attention"] is True
    assert fp32.encoder_key != bf16.encoder_key
    assert fp32.encoder_key.startswith(fp32.checkpoint_hash)


def test_an_unknown_precision_makes_the_model_unavailable_with_the_reason(tiny_checkpoint):
    provider = ModelProvider(str(tiny_checkpoint), allow_download=False, precision="fp8")
    provider.load()
    assert provider.status["available"] is False
    assert "precision must be" in provider.status["reason"]


def test_block_by_block_encoding_is_identical_and_calls_the_pause_hook(sam):
    image = _images(1)[0]
    calls = []
    predictor = PromptPredictor(sam)
    paused = predictor.encode_batch([image], between_blocks=lambda: calls.append(1))[0]
    assert len(calls) == len(sam.image_encoder.blocks)
    assert torch.equal(paused.features, predictor.encode(image).features)


def test_background_encoding_waits_between_blocks_while_a_click_holds(sam, tmp_path):
    """The prefetch worker's encoder stops at the next block boundary while a click encodes."""
    import threading

    from medicosam_app.embeddings.prefetch import Prefetcher, PrefetchPlan

    prefetcher = Prefetcher(lower_priority=False)
    predictor = PromptPredictor(sam)
    blocks_run, first_block = [], threading.Event()
    release = threading.Event()

    def hook():
        blocks_run.append(1)
        if len(blocks_run) == 1:
            first_block.set()
            release.wait(10)  # the click takes the hold while the worker sits at block 1
        prefetcher.pause_while_held()

    def encode(indices):
        predictor.encode_batch(_images(1), between_blocks=hook if prefetcher.in_worker() else None)

    try:
        prefetcher.focus("a", PrefetchPlan("img", [1], encode, lambda i: False))
        assert first_block.wait(10)
        with prefetcher.hold():
            release.set()
            assert not prefetcher.wait_idle(0.5), "the worker must wait while the click holds"
            assert len(blocks_run) == 1
        assert prefetcher.wait_idle(10)
        assert len(blocks_run) == len(sam.image_encoder.blocks)
    finally:
        prefetcher.stop()


def test_channels_last_decoder_gives_the_same_logits(sam):
    from medicosam_app.model.memory_layout import use_channels_last_decoder

    image = _images(1)[0]
    plain = PromptPredictor(sam)
    embedding = plain.encode(image)
    points, labels = np.array([[100.0, 60.0], [30.0, 20.0]]), np.array([1, 0])
    first = plain.predict(embedding, points, labels)
    reference = plain.predict(embedding, points, labels, mask_logits=first.low_res_logits)

    relaid = copy.deepcopy(sam)
    use_channels_last_decoder(relaid)
    quick = PromptPredictor(relaid)
    ours = quick.predict(embedding, points, labels, mask_logits=quick.predict(embedding, points, labels).low_res_logits)
    assert torch.allclose(ours.low_res_logits, reference.low_res_logits, atol=1e-5)
    assert (ours.mask == reference.mask).mean() > 0.999


def test_contiguous_encoder_tokens_give_the_same_features_and_no_layernorm_copies(sam):
    from torch.profiler import ProfilerActivity, profile

    from medicosam_app.model.memory_layout import ContiguousPatchEmbed, use_contiguous_encoder_tokens

    image = _images(1)[0]
    relaid = copy.deepcopy(sam)
    assert use_contiguous_encoder_tokens(relaid) and use_contiguous_encoder_tokens(relaid)  # twice is harmless
    assert type(relaid.image_encoder.patch_embed) is ContiguousPatchEmbed
    assert type(sam.image_encoder.patch_embed) is not ContiguousPatchEmbed
    reference = PromptPredictor(sam).encode(image).features
    ours = PromptPredictor(relaid).encode(image).features
    assert torch.allclose(ours, reference, atol=FUSED_TOLERANCE), float((ours - reference).abs().max())

    def layer_norm_copies(model) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            PromptPredictor(model).encode(image)
        return sum(1 for event in prof.events() if event.name == "aten::contiguous"
                   and event.cpu_parent is not None and event.cpu_parent.name == "aten::native_layer_norm")

    assert layer_norm_copies(sam) >= len(sam.image_encoder.blocks)  # the cost this removes (2 per block)
    assert layer_norm_copies(relaid) == 0
