"""The encoder batch size: chosen by timing growing batches on a GPU (the control logic, with a timing double),
one slice on a CPU, the configured size when there is one; every caller that embeds many slices takes it."""

from __future__ import annotations

import pytest
import torch

from medicosam_app.model.batch_choice import choose_batch_size, decide_batch_size
from medicosam_app.model.provider import ModelProvider


class PerSliceTimingDouble:
    """Test double for the GPU timing: seconds per slice by batch size, and which sizes were asked for."""

    def __init__(self, per_slice, out_of_memory_from=None):
        self.per_slice = per_slice
        self.out_of_memory_from = out_of_memory_from
        self.asked = []

    def __call__(self, size):
        self.asked.append(size)
        if self.out_of_memory_from is not None and size >= self.out_of_memory_from:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (double)")
        return self.per_slice[size]


def test_growing_batches_stop_where_a_doubling_gains_too_little():
    timing = PerSliceTimingDouble({1: 40e-3, 2: 25e-3, 4: 15e-3, 8: 12e-3, 16: 11.8e-3, 32: 5e-3})
    choice = decide_batch_size(timing)
    assert choice.chosen == 8  # 16 gains under 5 % over 8, so 32 is never timed
    assert timing.asked == [1, 2, 4, 8, 16]
    assert choice.ms_per_slice == {1: 40.0, 2: 25.0, 4: 15.0, 8: 12.0, 16: 11.8}


def test_a_slower_batch_ends_the_search_and_the_faster_one_stays():
    timing = PerSliceTimingDouble({1: 10e-3, 2: 12e-3, 4: 1e-3})
    assert decide_batch_size(timing).chosen == 1
    assert timing.asked == [1, 2]


def test_memory_cap_and_out_of_memory_bound_the_batch():
    fast = {size: 1.0 / size for size in (1, 2, 4, 8, 16, 32, 64)}
    capped = PerSliceTimingDouble(fast)
    choice = decide_batch_size(capped, memory_cap=6)
    assert choice.chosen == 4 and capped.asked == [1, 2, 4]
    assert "fit in the memory share" in choice.reason
    crowded = PerSliceTimingDouble(fast, out_of_memory_from=16)
    assert decide_batch_size(crowded).chosen == 8
    assert crowded.asked == [1, 2, 4, 8, 16]


def test_one_slice_per_pass_on_a_cpu_without_measuring(tiny_checkpoint):
    provider = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32")
    predictor = provider.predictor()
    assert predictor.encode_batch_size == 1
    assert provider.status["encode_batch"]["chosen"] == 1
    assert provider.status["encode_batch"]["ms_per_slice"] == {}
    assert choose_batch_size(predictor).chosen == 1


def test_a_configured_batch_size_wins(tiny_checkpoint):
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder

    provider = ModelProvider(
        checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32", encode_batch_size=5
    )
    assert provider.predictor().encode_batch_size == 5
    assert provider.status["encode_batch"] == {
        "chosen": 5, "reason": "set by configuration (encode_batch_size)", "ms_per_slice": {}, "memory_cap": None,
    }
    assert SliceEmbedder(provider).batch_size() == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures a GPU (benchmarks/gpu_check.py runs it there)")
def test_the_gpu_measurement_picks_a_timed_size(tiny_checkpoint):
    provider = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cuda", precision="fp32")
    choice = provider.status["encode_batch"] if provider.predictor() else None
    assert choice["chosen"] in choice["ms_per_slice"]


def test_the_attention_form_is_measured_where_asked_and_the_modules_switched(tiny_checkpoint):
    """On a CPU the mask form without measuring; measured (as on a GPU, here forced on the CPU) both forms are timed
    and the encoder's attention modules take the faster one, which still embeds as before."""
    import numpy as np

    from medicosam_app.model.attention import bias_form_of
    from medicosam_app.model.attention_choice import choose_bias_form

    # float32 embeddings: the two forms differ in the last bits, which float16 rounding could make one step
    provider = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                             embedding_storage="fp32")
    predictor = provider.predictor()
    assert provider.status["attention"] == {
        "form": "mask", "reason": "the bias as an additive mask: the faster form on a CPU", "encoder_ms": {}}
    image = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    before = predictor.encode(image).features
    measured = choose_bias_form(predictor, repeats=1, measure=True)
    assert set(measured.encoder_ms) == {"mask", "channels"}
    assert measured.form == min(measured.encoder_ms, key=measured.encoder_ms.get)
    assert bias_form_of(predictor.encoder) == measured.form
    assert torch.allclose(predictor.encode(image).features, before, atol=1e-4)
