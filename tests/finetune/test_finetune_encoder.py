"""Finetuning the image encoder too (LoRA or full): the stored change, its merge into a served encoder, the
embeddings' own key, and a real round with a tiny model (no test doubles)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import asymmetric_array, write_mni_subjects, write_volume
from medicosam_app.geometry.coordinates import SliceView
from medicosam_app.cli import main
from medicosam_app.finetune.config import FinetuneConfig
from medicosam_app.finetune.decoder_weights import decoder_state, predictor_with_decoder
from medicosam_app.finetune.serving import ServedDecoder
from medicosam_app.finetune.encoder_changes import (
    LowRankAdapted,
    continues,
    encoder_change,
    encoder_tag,
    encoder_with_change,
    trainable_encoder,
)
from medicosam_app.model.provider import ModelProvider
from medicosam_app.model.encoder_input import encoder_input
from medicosam_app.model.predictor import PromptPredictor
from medicosam_app.model.sam_builder import load_sam
from medicosam_app.learning.versions import VersionStore
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.geometry.volume import read_volume


@pytest.fixture()
def sam(tiny_checkpoint):
    torch.manual_seed(0)  # LoRA's A factors and the training direction: the same draws in any test order
    return load_sam(tiny_checkpoint)[0].eval()


def _image(seed=0, shape=(48, 64)):
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 255, shape, dtype=np.uint8)
    grey[10:30, 5:25] = 250  # an asymmetric bright block
    return np.repeat(grey[:, :, None], 3, axis=2)


@torch.no_grad()
def _features(sam, encoder, image):
    return encoder(encoder_input(sam, [image], torch.device("cpu")))


def _train_a_little(sam, encoder, parameters, steps=3):
    """A few SGD steps towards a fixed random direction of the features (the neck's LayerNorm would make a
    plain magnitude loss nearly flat)."""
    optimiser = torch.optim.SGD(parameters, lr=0.5)
    direction = None
    for step in range(steps):
        out = encoder(encoder_input(sam, [_image(step)], torch.device("cpu")))
        if direction is None:
            direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        loss = -(out * direction).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_lora_starts_as_the_checkpoint_and_its_merged_change_gives_the_trained_encoders_features(sam):
    original = {k: v.clone() for k, v in sam.image_encoder.state_dict().items()}
    encoder, parameters = trainable_encoder(sam.image_encoder, "lora", rank=2)
    assert len(parameters) == 2 * len(sam.image_encoder.blocks)
    assert all(isinstance(block.attn.qkv, LowRankAdapted) for block in encoder.blocks)
    image = _image()
    reference = _features(sam, sam.image_encoder, image)
    assert torch.allclose(_features(sam, encoder, image), reference, atol=1e-6)  # B = 0: no change yet
    _train_a_little(sam, encoder, parameters)
    trained = _features(sam, encoder, image)
    assert not torch.allclose(trained, reference, atol=1e-4)
    change = encoder_change(encoder, "lora")
    assert all(k.startswith("image_encoder_lora.") for k in change) and len(change) == 3 * len(sam.image_encoder.blocks)
    merged = encoder_with_change(sam.image_encoder, change)
    assert all(type(block.attn.qkv) is torch.nn.Linear for block in merged.blocks)  # a plain encoder to serve
    assert torch.allclose(_features(sam, merged, image), trained, atol=1e-4)
    # The loaded encoder is never touched, by training or by merging.
    assert all(torch.equal(v, original[k]) for k, v in sam.image_encoder.state_dict().items())


def test_a_full_change_round_trips_and_a_change_that_does_not_fit_is_refused(sam):
    encoder, parameters = trainable_encoder(sam.image_encoder, "full")
    assert len(parameters) == len(list(sam.image_encoder.parameters()))
    _train_a_little(sam, encoder, parameters, steps=1)
    change = encoder_change(encoder, "full")
    merged = encoder_with_change(sam.image_encoder, change)
    assert torch.allclose(_features(sam, merged, _image()), _features(sam, encoder, _image()), atol=1e-5)
    with pytest.raises(RuntimeError):  # a full change missing a weight is refused, not half loaded
        encoder_with_change(sam.image_encoder, dict(list(change.items())[1:]))
    adapted, adapters = trainable_encoder(sam.image_encoder, "lora", rank=2)
    _train_a_little(sam, adapted, adapters, steps=1)
    lora = encoder_change(adapted, "lora")
    narrow = {k: v[:, :-1] if k.endswith(".down") else v for k, v in lora.items()}  # factors of a narrower encoder
    with pytest.raises(ValueError, match="do not fit"):
        encoder_with_change(sam.image_encoder, narrow)
    deeper = {**lora, "image_encoder_lora.blocks.99.attn.qkv.down": lora["image_encoder_lora.blocks.0.attn.qkv.down"]}
    with pytest.raises(ValueError, match="blocks this encoder does not have"):
        encoder_with_change(sam.image_encoder, deeper)


def test_the_encoder_tag_names_the_change_and_keys_its_embeddings_apart(tiny_checkpoint, tmp_path):
    torch.manual_seed(0)
    models = ModelProvider(str(tiny_checkpoint), allow_download=False, precision="fp32")
    base = models.base_predictor()
    decoder_only = decoder_state(base.sam)
    assert encoder_tag(decoder_only) is None
    assert models.encoder_key_for(predictor_with_decoder(base, decoder_only)) == models.encoder_key_for(base)
    encoder, parameters = trainable_encoder(base.sam.image_encoder, "lora", rank=2)
    _train_a_little(base.sam, encoder, parameters, steps=1)
    state = {**decoder_only, **encoder_change(encoder, "lora")}
    version = predictor_with_decoder(base, state, "v0003")
    tag = encoder_tag(state)
    assert tag.startswith("lora-") and version.encoder_tag == tag and base.encoder_tag is None
    assert version.sam.image_encoder is not base.sam.image_encoder
    assert models.encoder_key_for(version) == f"{models.checkpoint_hash}-{base.embedding_kind}-{tag}"  # fp32, rounded or not
    bumped = {**state}
    first_up = next(k for k in state if k.endswith(".up"))
    bumped[first_up] = state[first_up] + 1e-3
    assert encoder_tag(bumped) != tag  # another change, other embeddings

    # One embedder, two encoders: each predictor's embedding is cached under its own key, the
    # checkpoint's stays valid, and the features are that encoder's.
    volume = read_volume(write_volume(tmp_path / "image.nii.gz", asymmetric_array()))
    embedder = SliceEmbedder(models)
    view = SliceView.create(volume.shape, volume.direction, 2)
    checkpoint_features, _ = embedder.embedding(volume, view, 5)
    version_features, _ = embedder.using(version).embedding(volume, view, 5)
    assert not torch.allclose(checkpoint_features.features, version_features.features, atol=1e-4)
    assert embedder.is_ready(volume, view, 5) and embedder.using(version).is_ready(volume, view, 5)
    direct = version.encode(embedder.slice_rgb(volume, view, 5)).features
    assert torch.allclose(version_features.features, direct, atol=1e-5)


def test_which_start_a_round_can_continue_and_an_untrained_lora_is_no_change(sam):
    lora, parameters = trainable_encoder(sam.image_encoder, "lora", rank=2)
    assert encoder_change(lora, "lora") == {}  # B = 0: nothing to store, the checkpoint's embeddings stay valid
    _train_a_little(sam, lora, parameters, steps=1)
    lora_change = encoder_change(lora, "lora")
    full_change = encoder_change(trainable_encoder(sam.image_encoder, "full")[0], "full")
    assert continues({}, "lora", 2) and continues(lora_change, "lora", 2) and not continues(lora_change, "lora", 4)
    assert not continues(full_change, "lora", 2)  # LoRA factors are relative to the checkpoint's encoder
    assert continues(full_change, "full", 2) and continues(lora_change, "full", 2) and continues(full_change, "frozen", 2)
    # A lora round continuing a LoRA version starts from its factors; full starts from its merged encoder.
    continued, _ = trainable_encoder(sam.image_encoder, "lora", rank=2, start=lora_change)
    assert torch.allclose(_features(sam, continued, _image()), _features(sam, lora, _image()), atol=1e-5)
    from_lora, _ = trainable_encoder(sam.image_encoder, "full", start=lora_change)
    assert torch.allclose(_features(sam, from_lora, _image()), _features(sam, lora, _image()), atol=1e-4)


def test_versions_with_one_change_share_one_encoder_copy_and_int8_runs_on_it(tiny_checkpoint):
    torch.manual_seed(0)
    models = ModelProvider(str(tiny_checkpoint), allow_download=False, precision="fp32")
    base = models.base_predictor()
    encoder, parameters = trainable_encoder(base.sam.image_encoder, "lora", rank=2)
    _train_a_little(base.sam, encoder, parameters, steps=1)
    state = {**decoder_state(base.sam), **encoder_change(encoder, "lora")}
    first, second = predictor_with_decoder(base, state, "v0001"), predictor_with_decoder(base, state, "v0002")
    assert first.sam.image_encoder is second.sam.image_encoder is not base.sam.image_encoder
    int8 = PromptPredictor(first.sam, torch.device("cpu"), "int8", encoder_tag=first.encoder_tag)
    reference = first.encode(_image()).features
    relative = float((int8.encode(_image()).features - reference).norm() / reference.norm())
    assert relative < 0.1 and models.encoder_key_for(int8) == models.encoder_key_of("int8", first.encoder_tag)


def test_encoder_options_are_checked():
    assert FinetuneConfig.from_mapping({"encoder": "LoRA", "lora_rank": "8"}).encoder == "lora"
    with pytest.raises(Exception, match="encoder='half'"):
        FinetuneConfig.from_mapping({"encoder": "half"})
    with pytest.raises(Exception, match="lora_rank"):
        FinetuneConfig.from_mapping({"lora_rank": 0})


def test_a_lora_round_trains_the_encoder_stores_its_change_and_serves_it_under_its_own_key(
    mni_template, tiny256_checkpoint, tmp_path, capsys
):
    studies = write_mni_subjects(tmp_path / "studies", mni_template, count=3, unlabelled=0)
    cache = tmp_path / "cache"
    assert main([
        "finetune", "--studies", str(studies), "--checkpoint", str(tiny256_checkpoint), "--cache-dir", str(cache),
        "--precision", "fp32", "--labels", "grey_matter,white_matter", "--quiet", "--json",
        "--encoder", "lora", "--lora-rank", "2", "--encoder-learning-rate", "0.005", "--learning-rate", "0.005",
        "--epochs", "3", "--sub-iterations", "3", "--max-slices-per-image", "3", "--gate-slices-per-image", "3",
    ]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "trained", summary
    history = summary["metrics"]["history"]
    assert min(h["val_loss"] for h in history[1:]) < history[0]["val_loss"], history  # it learned
    store = VersionStore(cache / "interactive", what="interactive model")
    meta = store.metadata("v0001")
    state = store.load_state("v0001")
    assert meta["encoder"] == "lora" and meta["encoder_tag"] == encoder_tag(state)
    assert meta["encoder_key"].endswith(meta["encoder_tag"])
    ups = [v for k, v in state.items() if k.startswith("image_encoder_lora.") and k.endswith(".up")]
    assert meta["metrics"]["best_epoch"] > 0 and any(float(u.abs().max()) > 0 for u in ups)  # the encoder changed

    # Served (promoted by the gate, or by hand): its encoder embeds under its own key; the checkpoint's
    # embeddings keep theirs, as the semantic decoder needs.
    if store.serving() != "v0001":
        store.promote("v0001", "test")
    # as the round's settings built it (embedding_storage auto: the key says whether embeddings are rounded)
    models = ModelProvider(str(tiny256_checkpoint), allow_download=False, precision="fp32", cache_dir=str(cache),
                           embedding_storage="auto", served_decoder=ServedDecoder(store))
    served = models.predictor()
    assert served.decoder_version == "v0001" and served.encoder_tag == meta["encoder_tag"]
    assert models.encoder_key == meta["encoder_key"] != models.checkpoint_encoder_key
    assert models.status["interactive_decoder"]["encoder"] == meta["encoder_tag"]
    embedder = SliceEmbedder(models)
    assert embedder.using_checkpoint_encoder().predictor() is models.base_predictor()
    # A decoder-only version promoted next uses the checkpoint's encoder again; a rollback brings the LoRA back.
    lock = store.acquire_training_lock()
    try:
        plain = store.add(decoder_state(models.base_predictor().sam), {"encoder_checkpoint": models.checkpoint_hash})
    finally:
        lock.release()
    store.promote(plain, "test")
    assert models.predictor().encoder_tag is None and models.encoder_key == models.checkpoint_encoder_key
    store.rollback()
    assert models.predictor().encoder_tag == meta["encoder_tag"]
