"""The GPU check script runs end to end (here on the CPU, with the tiny model): every row of the GPU table is printed
and none fails, so the script a GPU session runs has not rotted since the last one."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ROWS = (
    "matmul fp32", "sam fp32, 1 slice", "sam bf16 autocast, 1 slice", "sam bf16 autocast, batch 32",
    "sam decoder alone", "precision", "attention bias form", "encode batch", "embeddings rounded to float16",
    "ours, 1 slice (eager)", "ours, batch 1 (eager)", "mask agreement with sam fp32", "precompute 6-slice CT",
    "propagation cold, 6 slices", "propagation warm, 6 slices", "cold click", "warm click", "our decoder alone",
    "semantic decoder", "total time of this check",
)


def test_the_gpu_check_runs_on_the_cpu_and_prints_every_row(tmp_path):
    finished = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--arch", "tiny", "--slices", "6",
         "--side", "64", "--no-compile", "--repeats", "1", "--matmul-size", "256", "--precision", "fp32"],
        capture_output=True, text=True, timeout=900, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    out = finished.stdout
    missing = [row for row in ROWS if row not in out]
    assert not missing, out
    assert "failed" not in out and "rows that failed" not in out, out
    assert "precision                                                                fp32" in out
