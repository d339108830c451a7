"""Interactive finetuning: the decoder weights it changes, its prompts and loss, the served version's hot
swap, and real rounds on the CT phantom and the MNI sample with tiny models (no test doubles)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import write_mni_subjects, write_phantom_subjects
from medicosam_app.cli import main
from medicosam_app.finetune.config import FinetuneConfig
from medicosam_app.finetune.decoder_weights import (
    decoder_state,
    load_decoder_state,
    predictor_with_decoder,
    sam_with_own_decoder,
)
from medicosam_app.finetune.prompting import jittered_box, random_inside
from medicosam_app.finetune.serving import ServedDecoder
from medicosam_app.finetune.training import prediction_losses
from medicosam_app.model.provider import ModelProvider
from medicosam_app.model.predictor import PromptPredictor
from medicosam_app.model.sam_builder import load_sam
from medicosam_app.learning.versions import VersionStore


@pytest.fixture()
def base_predictor(tiny_checkpoint):
    sam, _ = load_sam(tiny_checkpoint)
    return PromptPredictor(sam, torch.device("cpu"), "fp32")


def test_a_version_predictor_shares_the_encoder_and_owns_its_decoder(base_predictor):
    state = decoder_state(base_predictor.sam)
    assert state and all(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in state)
    changed = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    version = predictor_with_decoder(base_predictor, changed, "v0007")
    assert version.sam.image_encoder is base_predictor.sam.image_encoder
    assert version.decoder_version == "v0007" and base_predictor.decoder_version is None
    assert torch.equal(decoder_state(base_predictor.sam)["mask_decoder.iou_token.weight"], state["mask_decoder.iou_token.weight"])
    assert torch.equal(decoder_state(version.sam)["mask_decoder.iou_token.weight"], changed["mask_decoder.iou_token.weight"])
    copy = sam_with_own_decoder(base_predictor.sam)
    load_decoder_state(copy, changed)
    with pytest.raises(RuntimeError):  # a state of another shape is refused, not half loaded
        load_decoder_state(copy, {k: v[..., :1] if v.ndim else v for k, v in state.items()})


def test_training_prompts_stay_on_the_object_and_in_the_image():
    mask = np.zeros((30, 40), dtype=bool)
    mask[0:10, 30:40] = True  # in the top-right corner: jitter must clip at the border
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = jittered_box(mask, 0.3, rng)
        assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 30 and x1 - x0 >= 1 and y1 - y0 >= 1
        click = random_inside(mask, rng)
        assert mask[click.y, click.x] and click.positive
    assert jittered_box(mask, 0.0, rng).tolist() == [30, 0, 40, 10]


def test_the_loss_is_low_for_a_right_mask_with_a_right_iou_and_high_otherwise():
    truth = torch.zeros(20, 20)
    truth[5:15, 5:15] = 1
    right = (truth * 40 - 20)[None]  # logits: +20 inside, -20 outside
    wrong = -right
    assert float(prediction_losses(right, torch.tensor([1.0]), truth)[0]) < 1e-3
    assert float(prediction_losses(right, torch.tensor([0.0]), truth)[0]) == pytest.approx(1.0, abs=1e-3)  # IoU 1 predicted 0
    assert float(prediction_losses(wrong, torch.tensor([0.0]), truth)[0]) > 0.99


def _store_with_versions(root, base, checkpoint_hash):
    store = VersionStore(root, what="interactive model")
    state = decoder_state(base.sam)
    bumped = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    lock = store.acquire_training_lock()
    try:
        first = store.add(state, {"encoder_checkpoint": checkpoint_hash})
        second = store.add(bumped, {"encoder_checkpoint": checkpoint_hash})
        foreign = store.add(state, {"encoder_checkpoint": "another checkpoint"})
    finally:
        lock.release()
    return store, first, second, foreign


def test_the_served_decoder_follows_promotion_and_rollback_and_refuses_foreign_versions(tiny_checkpoint, tmp_path):
    models = ModelProvider(checkpoint=str(tiny_checkpoint), precision="fp32", cache_dir=str(tmp_path),
                           served_decoder=ServedDecoder(VersionStore(tmp_path / "interactive", what="interactive model")))
    base = models.base_predictor()
    assert models.predictor() is base and models.interactive_version is None
    store, first, second, foreign = _store_with_versions(tmp_path / "interactive", base, models.checkpoint_hash)
    store.promote(first, "test")
    served = models.predictor()
    assert served is not base and served.decoder_version == first and models.interactive_version == first
    assert models.predictor() is served  # no reload while the pointer is unchanged
    store.promote(second, "test")
    assert models.predictor().decoder_version == second
    store.rollback()
    assert models.predictor().decoder_version == first
    store.promote(foreign, "test")
    assert models.predictor() is base
    assert "another checkpoint" in models.status["interactive_decoder"]["problem"]
    store.promote(second, "test")
    store.weights_path(second).write_bytes(b"damaged")
    assert models.predictor() is base  # a damaged version never takes clicks down
    assert "could not be loaded" in models.status["interactive_decoder"]["problem"]


def test_served_decoder_is_one_predictor_per_pointer_change(base_predictor, tmp_path):
    store = VersionStore(tmp_path, what="interactive model")
    served = ServedDecoder(store)
    assert served.predictor(base_predictor, "h") is base_predictor and served.status()["serving"] is None


def test_finetune_options_are_checked():
    assert FinetuneConfig.from_mapping({"epochs": "3", "learning_rate": "0.01"}).epochs == 3
    with pytest.raises(Exception, match="sub_iterations"):
        FinetuneConfig.from_mapping({"sub_iterations": 0})
    with pytest.raises(Exception, match="learning_rate"):
        FinetuneConfig.from_mapping({"learning_rate": 0})


def _finetune(studies, checkpoint, cache, *extra, labels="grey_matter,white_matter"):
    return main([
        "finetune", "--studies", str(studies), "--checkpoint", str(checkpoint), "--cache-dir", str(cache),
        "--precision", "fp32", "--labels", labels, "--quiet", "--json", *extra,
    ])


def test_a_finetune_round_on_the_mni_sample_raises_held_out_dice_and_is_versioned(
    mni_template, tiny256_checkpoint, tmp_path, capsys
):
    mni_studies = write_mni_subjects(tmp_path / "studies", mni_template, count=4, unlabelled=0)
    quick = ["--epochs", "10", "--learning-rate", "0.005", "--sub-iterations", "4", "--max-slices-per-image", "8",
             "--gate-slices-per-image", "8"]
    assert _finetune(mni_studies, tiny256_checkpoint, tmp_path / "cache", *quick) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "trained" and summary["version"] == "v0001" and summary["new_labels"] == 4
    gate = summary["metrics"]["gate"]
    # Real training: on the held-out subject the first prediction of each object is clearly better than the
    # checkpoint's decoder's, and the corrections end better too.
    assert gate["candidate"]["dice_first"] > gate["serving"]["dice_first"] + 0.15, gate
    assert gate["candidate"]["dice_final"] > gate["serving"]["dice_final"], gate
    # NoC@90 is no higher; whether a thin grey-matter ribbon reaches 90 % within 20 prompts with a random tiny
    # encoder depends on the epoch count (benchmarks/finetune.py: 19.59 vs 20.00): too close to assert a drop.
    assert gate["candidate"]["noc90"] <= gate["serving"]["noc90"], gate
    assert summary["promoted"] and gate["candidate"]["objects"] == gate["serving"]["objects"] > 0
    store = VersionStore(tmp_path / "cache" / "interactive", what="interactive model")
    meta = store.metadata("v0001")
    assert meta["encoder_checkpoint"] and meta["metrics"]["seconds_per_epoch"] > 0 and len(meta["metrics"]["history"]) == 11
    assert {d["image_id"] for d in meta["data"]} == {f"subject_{n}" for n in range(4)}
    assert store.serving() == "v0001"

    assert _finetune(mni_studies, tiny256_checkpoint, tmp_path / "cache", *quick) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["status"] == "nothing-to-do" and "0 new labels since v0001" in again["reason"]
    assert main(["models", "list", "--kind", "interactive", "--cache-dir", str(tmp_path / "cache")]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("* v0001") and "NoC@90" in listing

    # The served version is what evaluate measures (same objects, prompts and embeddings as the gate's).
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--studies", str(mni_studies), "--checkpoint", str(tiny256_checkpoint), "--cache-dir",
                 str(tmp_path / "cache"), "--precision", "fp32", "--quiet", "--no-3d", "--json", str(out),
                 "--max-slices-per-image", "2"]) == 0
    assert json.loads(out.read_text())["objects"]


def test_a_round_while_another_holds_the_lock_is_busy_and_bad_options_are_refused(mni_studies, tiny256_checkpoint, tmp_path, capsys):
    store = VersionStore(tmp_path / "cache" / "interactive", what="interactive model")
    lock = store.acquire_training_lock()
    try:
        assert _finetune(mni_studies, tiny256_checkpoint, tmp_path / "cache", "--epochs", "1") == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "busy"
    finally:
        lock.release()
    assert _finetune(mni_studies, tiny256_checkpoint, tmp_path / "cache", "--sub-iterations", "0") == 1
    assert "sub_iterations" in capsys.readouterr().err


def _evaluate(studies, checkpoint, cache, out, labels):
    assert main(["evaluate", "--studies", str(studies), "--checkpoint", str(checkpoint), "--cache-dir", str(cache),
                 "--precision", "fp32", "--labels", labels, "--no-3d", "--max-slices-per-image", "4", "--quiet",
                 "--json", str(out)]) == 0
    flat = [o for o in json.loads(out.read_text())["objects"] if o["dimension"] == "2d"]
    return {
        "objects": len(flat),
        "dice_first": float(np.mean([o["dice"][0] for o in flat])),
        "noc85": float(np.mean([o["noc"]["85"] for o in flat])),
        "noc90": float(np.mean([o["noc"]["90"] for o in flat])),
    }


def _phantom_round(checkpoint, tmp_path, capsys, labels):
    """Four phantom patients (organs shifted, other noise); phantom_2 is the one the hash split holds out.
    ``labels`` evaluated on phantom_2 alone before and after one round, with the same prompts and embeddings."""
    import shutil

    studies = write_phantom_subjects(tmp_path / "studies", count=4)
    held_out = tmp_path / "held_out"
    (held_out / "labels" / "final").mkdir(parents=True)
    shutil.copy(studies / "phantom_2.nii.gz", held_out)
    shutil.copy(studies / "labels" / "final" / "phantom_2.nii.gz", held_out / "labels" / "final")
    cache = tmp_path / "cache"
    before = _evaluate(held_out, checkpoint, cache, tmp_path / "before.json", labels)
    assert _finetune(studies, checkpoint, cache, "--epochs", "15", "--learning-rate", "0.005",
                     "--sub-iterations", "4", "--max-slices-per-image", "8", "--gate-slices-per-image", "4",
                     labels=labels) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["promoted"] and "phantom_2" in VersionStore(cache / "interactive").metadata("v0001")["val_images"]
    after = _evaluate(held_out, checkpoint, cache, tmp_path / "after.json", labels)
    assert after["objects"] == before["objects"] > 0
    return before, after


def test_finetuning_on_ct_phantoms_lowers_the_clicks_on_a_held_out_patient(tiny256_checkpoint, tmp_path, capsys):
    before, after = _phantom_round(tiny256_checkpoint, tmp_path, capsys, '{"spine": 2}')
    assert after["dice_first"] > before["dice_first"] + 0.3, (before, after)
    # Random tiny encoders limit how far a 2-layer decoder gets on the spine: 85 % is reached in a few clicks
    # after the round (never before), 90 % within 20 prompts neither before nor after on this patient.
    assert after["noc85"] < before["noc85"] - 5, (before, after)
    assert after["noc90"] <= before["noc90"], (before, after)


def test_finetuning_brings_the_liver_of_a_held_out_patient_to_90_percent_dice_in_fewer_clicks(
    tiny256_checkpoint, tmp_path, capsys
):
    """NoC itself: the liver of phantom_2 never reaches 90 % Dice within 20 prompts with the checkpoint's
    decoder; after one round on the other patients it does. Measured here: NoC@85 20 → 1 and NoC@90 20 → 1 or
    10.5 (two of four objects either side of 90 % with float rounding: the gradient summed per prediction or
    per batch, equal to 1e-8, tips them). The margins asserted hold on either side of that."""
    before, after = _phantom_round(tiny256_checkpoint, tmp_path, capsys, '{"liver": 1}')
    assert before["noc90"] > 15, before
    assert after["noc90"] < before["noc90"] - 5, (before, after)
    assert after["noc85"] < before["noc85"] - 10, (before, after)
    assert after["dice_first"] > before["dice_first"] + 0.5, (before, after)


def test_a_version_loading_slowly_does_not_stall_other_requests(tiny_checkpoint, tmp_path, monkeypatch):
    """The request that sees a promotion first loads it; requests meanwhile keep the previous predictor (a
    version with its own encoder takes seconds to load for ViT-B)."""
    import threading
    import time

    import medicosam_app.finetune.serving as serving

    models = ModelProvider(checkpoint=str(tiny_checkpoint), precision="fp32", cache_dir=str(tmp_path),
                           served_decoder=ServedDecoder(VersionStore(tmp_path / "interactive", what="interactive model")))
    base = models.base_predictor()
    store, first, second, _ = _store_with_versions(tmp_path / "interactive", base, models.checkpoint_hash)
    store.promote(first, "test")
    assert models.predictor().decoder_version == first
    started, release = threading.Event(), threading.Event()
    real = serving.predictor_with_decoder

    def slow_predictor_with_decoder_double(*args, **kwargs):  # test double: the real load, held until released
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(serving, "predictor_with_decoder", slow_predictor_with_decoder_double)
    store.promote(second, "test")
    loaded = {}
    loader = threading.Thread(target=lambda: loaded.setdefault("p", models.predictor()))
    loader.start()
    assert started.wait(10)
    began = time.perf_counter()
    meanwhile = models.predictor()
    assert meanwhile.decoder_version == first and time.perf_counter() - began < 1.0  # not stalled behind the load
    release.set()
    loader.join(10)
    assert loaded["p"].decoder_version == second and models.predictor().decoder_version == second
