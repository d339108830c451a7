"""The encoder compiled in the background: used only once ready, faster and agreeing; a failure or a slower compile
leaves the eager encoder. The control logic with a compiler and clock double; one real ``torch.compile`` on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medicosam_app.model.compiled_encoder import EncoderCompilation, wants_compile
from medicosam_app.model.provider import ModelProvider


class ClockDouble:
    """Test double for the timer: time moves only when a block runs (``cost`` ms per eager block call)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now += ms / 1000


class CompilerDouble:
    """Test double for ``torch.compile``: the block's own forward (no hooks), at ``cost_ms`` per call, optionally
    changing its output; counts the calls."""

    def __init__(self, clock, cost_ms, change=None, fail=False):
        self.clock, self.cost_ms, self.change, self.fail = clock, cost_ms, change, fail
        self.calls = 0

    def __call__(self, block):
        if self.fail:
            raise RuntimeError("inductor: no C++ compiler (double)")

        def compiled(x):
            self.calls += 1
            self.clock.advance(self.cost_ms)
            out = block.forward(x)
            return self.change(out) if self.change else out

        return compiled


@pytest.fixture()
def predictor(tiny_checkpoint):
    return ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32").predictor()


def _compile(predictor, compiler, clock, eager_ms=10.0):
    handles = [block.register_forward_pre_hook(lambda *_: clock.advance(eager_ms)) for block in predictor.encoder.blocks]
    try:
        compilation = EncoderCompilation(predictor, compiler=compiler, timer=clock, repeats=2)
        compilation.start()
        assert compilation.wait(60)
    finally:
        for handle in handles:
            handle.remove()
    return compilation.status


def _image():
    return (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


def test_faster_agreeing_blocks_are_switched_to(predictor):
    eager = predictor.encode(_image()).features
    clock = ClockDouble()
    compiler = CompilerDouble(clock, cost_ms=4.0)
    status = _compile(predictor, compiler, clock)
    assert status.state == "ready", status
    blocks = len(predictor.encoder.blocks)
    assert status.eager_ms == {1: 10.0 * blocks} and status.compiled_ms == {1: 4.0 * blocks}
    assert status.mean_mask_iou == 1.0
    assert len(predictor.compiled_blocks) == blocks
    calls = compiler.calls
    assert torch.equal(predictor.encode(_image()).features, eager)
    assert compiler.calls == calls + blocks  # the click's encode ran the compiled blocks
    assert predictor.compiled_sizes == {1}
    predictor.encode_batch([_image(), _image()])  # a size never compiled: eager, not a compile on this thread
    assert compiler.calls == calls + blocks


def test_slower_blocks_are_not_used(predictor):
    clock = ClockDouble()
    status = _compile(predictor, CompilerDouble(clock, cost_ms=12.0), clock)
    assert status.state == "not used" and "not faster" in status.reason
    assert predictor.compiled_blocks == []


def test_blocks_whose_masks_differ_are_not_used(predictor):
    clock = ClockDouble()
    status = _compile(predictor, CompilerDouble(clock, cost_ms=1.0, change=lambda out: -3 * out), clock)
    assert status.state == "not used" and "masks differ" in status.reason, status
    assert status.mean_mask_iou < 0.98
    assert predictor.compiled_blocks == []


def test_a_failing_compile_leaves_the_eager_encoder_with_the_reason(predictor):
    clock = ClockDouble()
    status = _compile(predictor, CompilerDouble(clock, cost_ms=1.0, fail=True), clock)
    assert status.state == "failed" and "no C++ compiler" in status.reason
    assert predictor.compiled_blocks == [] and predictor.encode(_image()).features.shape[0] == 1


def test_the_setting_compiles_on_a_gpu_by_default_and_is_checked():
    assert wants_compile("auto", torch.device("cuda")) and not wants_compile("auto", torch.device("cpu"))
    assert wants_compile("on", torch.device("cpu")) and not wants_compile("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="compile_encoder"):
        wants_compile("always", torch.device("cpu"))


def test_a_real_compile_in_the_background_agrees_with_the_eager_encoder(tiny_checkpoint, tmp_path):
    """``compile_encoder on`` with torch.compile itself (inductor on the CPU): the server's path, status in /info."""
    # float32 embeddings: a compiled sum may differ from eager's in the last bits, which float16 rounding could
    # turn into one float16 step (1e-3), and this test compares the features themselves.
    provider = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                             compile_encoder="on", cache_dir=str(tmp_path), embedding_storage="fp32")
    predictor = provider.predictor()
    eager = predictor.encode(_image()).features  # served while compiling (or after)
    assert provider.compilation.wait(600)
    status = provider.status["compile"]
    assert status["state"] in ("ready", "not used"), status
    assert status["mean_mask_iou"] >= 0.98
    assert set(status["compiled_ms"]) == {1}
    assert torch.allclose(predictor.encode(_image()).features, eager, atol=1e-4)
    assert (tmp_path / "compile").is_dir()
    eager_only = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32")
    eager_only.predictor()
    assert eager_only.status["compile"] == {"state": "off", "reason": "compile_encoder auto on cpu"}
    assert eager_only.compilation is None
