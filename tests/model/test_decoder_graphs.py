"""The decoder as a graph per prompt shape: adopted only if its answer is the eager decoder's and faster; each replay
reads the click's own prompt (copied into the graph's buffers); a failing, slower or different capture stays eager.
A capture double stands in for CUDA (replay = recompute from the static buffers, as a graph does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medicosam_app.model.decoder_graphs import DecoderGraphs, shape_key, wants_graphs
from medicosam_app.model.provider import ModelProvider


class ClockDouble:
    def __init__(self):
        self.now, self.paused = 0.0, False

    def __call__(self):
        return self.now

    def advance(self, ms):
        if not self.paused:
            self.now += ms / 1000


class CaptureDouble:
    """Test double for ``capture_cuda_graph``: the outputs are static tensors; replay recomputes ``run`` (which reads
    the static inputs) into them at ``cost_ms``; ``change`` alters the replayed logits; ``fail`` raises."""

    def __init__(self, clock, cost_ms=1.0, change=None, fail=False):
        self.clock, self.cost_ms, self.change, self.fail = clock, cost_ms, change, fail
        self.captures = 0

    def __call__(self, run):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing (double)")
        self.captures += 1
        outputs = tuple(t.clone() for t in run())

        def replay():
            self.clock.paused = True
            try:
                fresh = run()
            finally:
                self.clock.paused = False
            self.clock.advance(self.cost_ms)
            outputs[0].copy_(self.change(fresh[0]) if self.change else fresh[0])
            outputs[1].copy_(fresh[1])

        return replay, outputs


@pytest.fixture()
def predictor(tiny_checkpoint):
    return ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32").predictor()


def _graphs(predictor, clock, capture, eager_ms=4.0, **kwargs):
    predictor.sam.mask_decoder.register_forward_pre_hook(lambda *_: clock.advance(eager_ms))
    return DecoderGraphs(predictor.sam, predictor.dense_pe, capture=capture, timer=clock, synchronize=lambda: None,
                         repeats=3, **kwargs)


def _image():
    return (np.random.default_rng(2).random((60, 44, 3)) * 255).astype(np.uint8)


def test_an_adopted_graph_answers_each_click_with_its_own_prompt(predictor):
    embedding = predictor.encode(_image())
    plain = [predictor.predict(embedding, np.array([[x, 20.0]]), np.array([1])) for x in (10.0, 30.0)]
    boxed = predictor.predict(embedding, None, None, np.array([5.0, 8.0, 30.0, 40.0]))
    clock = ClockDouble()
    capture = CaptureDouble(clock)
    predictor.decoder_graphs = _graphs(predictor, clock, capture)
    replayed = [predictor.predict(embedding, np.array([[x, 20.0]]), np.array([1])) for x in (10.0, 30.0)]
    assert capture.captures == 1  # one graph for the one-point shape, replayed for the second click
    for ours, expected in zip(replayed, plain):
        assert np.array_equal(ours.mask, expected.mask)
        assert torch.allclose(ours.low_res_logits, expected.low_res_logits, atol=1e-5)
    assert not np.array_equal(plain[0].mask, plain[1].mask) or not torch.equal(plain[0].low_res_logits, plain[1].low_res_logits)
    box = predictor.predict(embedding, None, None, np.array([5.0, 8.0, 30.0, 40.0]))
    assert capture.captures == 2 and np.array_equal(box.mask, boxed.mask)
    status = predictor.decoder_graphs.status()
    assert set(status) == {"1p/3", "0p+box/1"}
    assert status["1p/3"]["state"] == "graph" and status["1p/3"]["eager_ms"] == 4.0 and status["1p/3"]["graph_ms"] == 1.0


@pytest.mark.parametrize("capture_kwargs, reason", [
    ({"fail": True}, "capture failed"),
    ({"cost_ms": 6.0}, "not faster"),
    ({"change": lambda logits: logits + 1.0}, "differs"),
])
def test_a_capture_that_fails_is_slower_or_differs_stays_eager(predictor, capture_kwargs, reason):
    embedding = predictor.encode(_image())
    expected = predictor.predict(embedding, np.array([[12.0, 25.0]]), np.array([1]))
    clock = ClockDouble()
    capture = CaptureDouble(clock, **capture_kwargs)
    predictor.decoder_graphs = _graphs(predictor, clock, capture)
    for _ in range(2):
        answer = predictor.predict(embedding, np.array([[12.0, 25.0]]), np.array([1]))
        assert np.array_equal(answer.mask, expected.mask)
    decision = predictor.decoder_graphs.status()["1p/3"]
    assert decision["state"] == "eager" and reason in decision["reason"], decision
    assert capture.captures <= 1  # decided once per shape


def test_at_most_max_graphs_shapes_are_kept(predictor):
    embedding = predictor.encode(_image())
    clock = ClockDouble()
    predictor.decoder_graphs = _graphs(predictor, clock, CaptureDouble(clock), max_graphs=2)
    for count in (1, 2, 3):
        points = np.array([[10.0 + 5 * n, 20.0] for n in range(count)])
        predictor.predict(embedding, points, np.ones(count, dtype=int), multimask=False)
    assert set(predictor.decoder_graphs.status()) == {"2p/1", "3p/1"}


def test_shape_keys_and_the_setting():
    points = torch.zeros(1, 2, 2)
    assert shape_key(points, torch.zeros(1, 4), torch.zeros(1, 1, 256, 256), True) == "2p+box+mask/3"
    assert shape_key(None, torch.zeros(1, 4), None, False) == "0p+box/1"
    assert wants_graphs("auto", torch.device("cuda")) and not wants_graphs("auto", torch.device("cpu"))
    assert not wants_graphs("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="decoder_cuda_graphs"):
        wants_graphs("on", torch.device("cuda"))


def test_off_on_a_cpu_in_info(predictor, tiny_checkpoint):
    provider = ModelProvider(checkpoint=str(tiny_checkpoint), allow_download=False, device="cpu", precision="fp32",
                             decoder_cuda_graphs="auto")
    assert provider.predictor().decoder_graphs is None
    assert provider.status["decoder_graphs"] == {"state": "off", "reason": "decoder_cuda_graphs auto on cpu"}


@pytest.mark.parametrize("points, labels, box, mask", [
    ([[10.0, 20.0]], [1], None, False),
    ([[10.0, 20.0], [30.0, 5.0], [3.0, 3.0]], [1, 0, 1], None, True),
    ([[10.0, 20.0]], [0], [[2.0, 4.0, 40.0, 50.0]], False),
    (None, None, [[2.0, 4.0, 40.0, 50.0]], True),
])
def test_the_graph_friendly_prompt_encoder_is_sams(predictor, points, labels, box, mask):
    from medicosam_app.model.decoder_graphs import prompt_embeddings

    encoder = predictor.sam.prompt_encoder
    torch.nn.init.normal_(encoder.not_a_point_embed.weight)  # random weights: every label's term differs
    coords = None if points is None else torch.tensor([points])
    kinds = None if labels is None else torch.tensor([labels], dtype=torch.int)
    boxes = None if box is None else torch.tensor(box)
    masks = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0)) if mask else None
    with torch.inference_mode():
        expected = encoder(points=None if coords is None else (coords, kinds), boxes=boxes, masks=masks)
        ours = prompt_embeddings(encoder, coords, kinds, boxes, masks)
    for a, b in zip(ours, expected):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
