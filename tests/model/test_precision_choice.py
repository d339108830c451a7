"""``precision auto``: measured per machine and model, checked against fp32's masks, remembered on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from medicosam_app.model.int8_encoder import int8_supported
from medicosam_app.model.precision_choice import (
    ModelPrecisionProbe,
    PrecisionChoices,
    candidate_precisions,
    choose_precision,
    decide,
    device_description,
)
from medicosam_app.model.provider import ModelProvider
from medicosam_app.model.sam_builder import load_sam


class ProbeDouble:
    """Test double for the measurements: given timings and mask agreements; counts what was asked."""

    def __init__(self, seconds, ious, failing=()):
        self.seconds, self.ious, self.failing = seconds, ious, set(failing)
        self.timed, self.checked = [], []

    def block_seconds(self, precision):
        self.timed.append(precision)
        if precision in self.failing or precision not in self.seconds:  # not given: as if it had no kernel here
            raise RuntimeError(f"no {precision} kernel")
        return self.seconds[precision]

    def mask_iou(self, precision):
        self.checked.append(precision)
        return self.ious[precision]


def test_the_fastest_precision_whose_masks_agree_wins():
    probe = ProbeDouble({"fp32": 2.0, "bf16": 0.5, "fp16": 0.4}, {"bf16": 0.995, "fp16": 0.90})
    choice = decide(["fp32", "bf16", "fp16"], probe)
    assert choice.chosen == "bf16" and "4.0× faster" in choice.reason
    assert probe.checked == ["fp16", "bf16"]  # fastest first; fp16 disagreed
    assert choice.encoder_ms == {"fp32": 2000.0, "bf16": 500.0, "fp16": 400.0}
    assert choice.mean_mask_iou == {"fp16": 0.9, "bf16": 0.995}


def test_a_slower_precision_is_never_checked_and_fp32_stays():
    probe = ProbeDouble({"fp32": 1.0, "bf16": 6.0}, {})  # bf16 on a CPU without AMX
    choice = decide(["fp32", "bf16"], probe)
    assert choice.chosen == "fp32" and probe.checked == [] and choice.reason == "fp32 is the fastest precision here"


def test_faster_but_disagreeing_or_failing_precisions_are_not_used():
    probe = ProbeDouble({"fp32": 1.0, "bf16": 0.2, "fp16": 0.1}, {"bf16": 0.5}, failing={"fp16"})
    choice = decide(["fp32", "bf16", "fp16"], probe)
    assert choice.chosen == "fp32" and "differ from fp32" in choice.reason
    assert set(choice.encoder_ms) == {"fp32", "bf16"}


def test_the_decision_is_remembered_per_machine_torch_and_checkpoint(tmp_path):
    probe = ProbeDouble({"fp32": 1.0, "bf16": 0.5}, {"bf16": 0.99})
    cpu = torch.device("cpu")
    first = choose_precision(None, cpu, "hash-a", tmp_path, probe=probe)
    assert first.chosen == "bf16" and not first.from_cache and first.device == device_description(cpu)
    assert first.torch == torch.__version__ and first.checkpoint_xxh128 == "hash-a"
    again = choose_precision(None, cpu, "hash-a", tmp_path, probe=ProbeDouble({}, {}))  # would fail if asked
    assert again.chosen == "bf16" and again.from_cache and again.encoder_ms == first.encoder_ms
    other = ProbeDouble({"fp32": 1.0, "bf16": 3.0}, {})
    assert choose_precision(None, cpu, "hash-b", tmp_path, probe=other).chosen == "fp32" and other.timed
    [saved] = [json.loads(p.read_text()) for p in tmp_path.glob("*.json") if json.loads(p.read_text())["checkpoint_xxh128"] == "hash-a"]
    assert saved["chosen"] == "bf16" and saved["from_cache"] is False
    assert PrecisionChoices.key("cpu: X", "h") != PrecisionChoices.key("cpu: Y", "h")


def test_an_unreadable_remembered_decision_is_measured_again(tmp_path):
    candidates = candidate_precisions(torch.device("cpu"))
    key = PrecisionChoices.key(device_description(torch.device("cpu")), "hash-a", f";candidates={','.join(candidates)}")
    (tmp_path / f"{key}.json").write_text("{not json")
    probe = ProbeDouble({p: (1.0 if p == "fp32" else 2.0) for p in candidates}, {})
    assert choose_precision(None, torch.device("cpu"), "hash-a", tmp_path, probe=probe).chosen == "fp32"
    assert probe.timed == candidates


def test_a_cpu_offers_int8_next_to_bf16_where_torch_has_quantised_kernels():
    assert candidate_precisions(torch.device("cpu"))[:2] == ["fp32", "bf16"]
    assert ("int8" in candidate_precisions(torch.device("cpu"))) == int8_supported()


def test_the_real_probe_times_both_precisions_and_fp32_agrees_with_itself(tiny_checkpoint):
    sam = load_sam(tiny_checkpoint)[0]
    probe = ModelPrecisionProbe(sam, torch.device("cpu"))
    assert probe.block_seconds("fp32") > 0 and probe.block_seconds("bf16") > 0 and probe.block_seconds("int8") > 0
    assert probe.mask_iou("fp32") == 1.0
    assert 0.0 <= probe.mask_iou("bf16") <= 1.0
    assert probe.mask_iou("int8") > 0.5  # int8 linear layers move the probe masks little (tiny random weights)
    # Measuring leaves the global random state alone (training after a model load must stay reproducible).
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    probe.block_seconds("fp32")
    probe.mask_iou("bf16")
    assert torch.equal(torch.rand(3), expected)


class MatmulTimingsDouble(ModelPrecisionProbe):
    """The real probe with given matmul timings (test double for the screen) that records which blocks it times."""

    def __init__(self, sam, matmul_seconds):
        super().__init__(sam, torch.device("cpu"))
        self.matmul = matmul_seconds
        self.timed_blocks = []

    def _matmul_seconds(self, dtype):
        return self.matmul[dtype]

    def _time_blocks(self, precision):
        self.timed_blocks.append(precision)
        return super()._time_blocks(precision)


def test_a_precision_whose_matmuls_are_far_slower_is_estimated_not_timed_block_by_block(tiny_checkpoint):
    """bf16 on a CPU without bf16 units: timing ViT-B's blocks in it took many minutes at a first start."""
    sam = load_sam(tiny_checkpoint)[0]
    slow = MatmulTimingsDouble(sam, {torch.float32: 0.001, torch.bfloat16: 0.5})
    assert slow.block_seconds("bf16") == pytest.approx(slow.block_seconds("fp32") * 500)
    assert slow.timed_blocks == ["fp32"]  # bf16's blocks never ran
    near = MatmulTimingsDouble(sam, {torch.float32: 0.001, torch.bfloat16: 0.002})
    near.block_seconds("bf16")
    assert near.timed_blocks == ["bf16"]  # close enough to fp32 to be worth timing properly


def test_model_provider_auto_measures_once_and_shows_why(tiny_checkpoint, tmp_path):
    provider = ModelProvider(str(tiny_checkpoint), cache_dir=str(tmp_path), allow_download=False, precision="auto")
    predictor = provider.predictor()
    status = provider.status
    choice = status["precision_choice"]
    assert set(choice["encoder_ms"]) == set(candidate_precisions(torch.device("cpu"))) and choice["chosen"] == predictor.precision == status["precision"]
    assert not choice["from_cache"] and provider.encoder_key.endswith(f"-{predictor.embedding_kind}")
    assert predictor.embedding_kind.startswith(predictor.precision)
    assert list((tmp_path / "precision").glob("*.json"))
    second = ModelProvider(str(tiny_checkpoint), cache_dir=str(tmp_path), allow_download=False, precision="auto")
    assert second.predictor().precision == predictor.precision and second.status["precision_choice"]["from_cache"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_configured_precision_is_used_without_measuring(tiny_checkpoint, tmp_path, precision):
    provider = ModelProvider(str(tiny_checkpoint), cache_dir=str(tmp_path), allow_download=False, precision=precision)
    assert provider.predictor().precision == precision
    assert provider.status["precision_choice"]["reason"].startswith("set by configuration")
    assert not (tmp_path / "precision").exists()


TWO_PROCESSES = """
import json, sys, time
import torch
from medicosam_app.model.precision_choice import choose_precision

class SlowProbeDouble:
    '''Test double: the given precision is fastest and agrees; each timing takes a while, as a real one does.'''
    def __init__(self, fastest):
        self.fastest, self.asked = fastest, False
    def block_seconds(self, precision):
        if not self.asked:
            print("measuring", flush=True)
        self.asked = True
        time.sleep(2.0)  # longer than the second process takes to start: it arrives mid-measurement
        return 0.5 if precision == self.fastest else 1.0
    def mask_iou(self, precision):
        return 0.999

probe = SlowProbeDouble(sys.argv[2])
choice = choose_precision(None, torch.device("cpu"), "hash-shared", sys.argv[1], probe=probe)
print(json.dumps({"chosen": choice.chosen, "measured": probe.asked}))
"""


def test_processes_starting_together_on_one_machine_measure_once_and_agree(tmp_path):
    """Two torchrun ranks or replicas start at the same moment: the second waits for the first's decision
    instead of measuring alongside it (and perhaps choosing otherwise: here its own timings favour fp32)."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    command = [sys.executable, "-c", TWO_PROCESSES, str(tmp_path / "precision")]
    first = subprocess.Popen(command + ["bf16"], stdout=subprocess.PIPE, text=True, env=env)
    assert first.stdout.readline().strip() == "measuring"
    second = subprocess.Popen(command + ["fp32"], stdout=subprocess.PIPE, text=True, env=env)
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in (first, second)]
    assert results[0] == {"chosen": "bf16", "measured": True}
    assert results[1] == {"chosen": "bf16", "measured": False}  # read the first one's decision
