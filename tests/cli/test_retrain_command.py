"""``python -m medicosam_app retrain`` and ``models`` as cron and an admin run them: real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from conftest import SEMANTIC_TRAINING
from medicosam_app.cli.retrain import models_agreeing_on_precision
from medicosam_app.learning.versions import VersionStore
from medicosam_app.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _command(checkpoint: Path, cache: Path, *args: str) -> list:
    return [sys.executable, "-m", "medicosam_app", *args, "--checkpoint", str(checkpoint), "--cache-dir", str(cache)]


def _retrain(checkpoint, cache, studies, *extra, epochs=2, quiet=True):
    options = [f"--{k.replace('_', '-')}={v}" for k, v in SEMANTIC_TRAINING.items()] + (["--quiet"] if quiet else [])
    return _command(checkpoint, cache, "retrain", "--studies", str(studies), f"--epochs={epochs}", *options, *extra)


def _run(command, **kwargs):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)


def test_cron_command_trains_once_then_has_nothing_to_do(tiny256_checkpoint, tmp_path, mni_studies):
    cache = tmp_path / "cache"
    first = _run(_retrain(tiny256_checkpoint, cache, mni_studies, "--min-new-labels", "3"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("retrain: v0001 from 3 new labels") and "promoted" in first.stdout
    second = _run(_retrain(tiny256_checkpoint, cache, mni_studies, "--min-new-labels", "3"))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines() == ["retrain: nothing-to-do: 0 new labels since v0001, 3 needed"]
    listing = _run([sys.executable, "-m", "medicosam_app", "models", "list", "--json", "--cache-dir", str(cache)])
    versions = json.loads(listing.stdout)
    assert [v["version"] for v in versions] == ["v0001"] and versions[0]["serving"]


def test_a_training_run_killed_midway_leaves_serving_intact(tiny256_checkpoint, tmp_path, mni_studies):
    cache = tmp_path / "cache"
    assert _run(_retrain(tiny256_checkpoint, cache, mni_studies)).returncode == 0
    store = VersionStore(cache / "semantic")
    served = store.serving()
    weights = store.weights_path(served).read_bytes()
    # Force a long second run and kill it hard once training has begun.
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            _retrain(tiny256_checkpoint, cache, mni_studies, "--force", epochs=200, quiet=False),
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    deadline = time.time() + 120
    while time.time() < deadline and "Training semantic decoder" not in log.read_text():
        time.sleep(0.5)
    assert run.poll() is None, log.read_text()
    time.sleep(2)
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    assert store.ids() == ["v0001"] and store.serving() == served
    assert store.weights_path(served).read_bytes() == weights
    # The lock died with the process: the next run is not blocked.
    after = _run(_retrain(tiny256_checkpoint, cache, mni_studies, "--force", epochs=1))
    assert after.returncode == 0 and "v0002" in after.stdout, after.stderr


def test_distributed_training_on_two_cpu_processes(tiny256_checkpoint, tmp_path, mni_studies):
    cache = tmp_path / "cache"
    result = _run(_retrain(tiny256_checkpoint, cache, mni_studies, "--nproc", "2", "--json"),
                  env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    summary = json.loads(lines[0])
    assert summary["status"] == "trained" and summary["promoted"]
    meta = VersionStore(cache / "semantic").metadata(summary["version"])
    assert meta["world_size"] == 2
    # Both processes embedded under one encoder key (checkpoint + precision), so each read the other's slices.
    assert len([d for d in (cache / "embeddings").iterdir() if d.is_dir()]) == 1
    assert meta["metrics"]["history"][-1]["train_loss"] < meta["metrics"]["history"][0]["train_loss"] * 1.2


class RankDouble:
    """Test double of DistContext: one rank of a two-process run whose broadcast hands out rank 0's value."""

    def __init__(self, rank: int, rank0_value=None):
        self.rank, self.active, self.rank0_value = rank, True, rank0_value

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value):
        return value if self.rank == 0 else self.rank0_value


class ProviderDouble:
    """Test double of ModelProvider: records the precision it was built with and 'measures' int8 for auto."""

    def __init__(self, settings):
        self.built_with = settings.precision

    def base_predictor(self):
        return SimpleNamespace(precision="int8" if self.built_with == "auto" else self.built_with)


def test_ranks_of_a_distributed_run_embed_in_rank_0s_precision():
    settings = Settings.from_conf({"precision": "auto", "download": "false"})
    rank0_settings, rank0_models = models_agreeing_on_precision(settings, RankDouble(0), ProviderDouble)
    assert rank0_settings.precision == "int8" and rank0_models.built_with == "auto"  # measured once, on rank 0
    rank1_settings, rank1_models = models_agreeing_on_precision(settings, RankDouble(1, "int8"), ProviderDouble)
    assert rank1_settings.precision == "int8" and rank1_models.built_with == "int8"  # never measured itself
    forced = Settings.from_conf({"precision": "fp32", "download": "false"})
    assert models_agreeing_on_precision(forced, RankDouble(1, "int8"), ProviderDouble)[1].built_with == "fp32"
