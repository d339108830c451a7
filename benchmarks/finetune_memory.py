"""Peak resident memory of ``python -m medicosam_app finetune`` at MedicoSAM's shape, against the number of volumes.

    python benchmarks/finetune_memory.py [--volumes 1 2 4] [--epochs 1] [--precision fp32]

A ViT-B-shaped SAM with random weights (the published shape; no weights can be downloaded here), and datastores
of 1, 2, 4 … small labelled volumes (48×40×12 and 60×50×14 voxels, two classes of blobs). Each run starts from
an empty cache, so it embeds its slices, trains one round with the default settings and gates it, as an
administrator's ``finetune`` would. The command's process tree is sampled every 0.1 s; the peak resident set
size (RSS) is printed per run with the seconds it took, and the round's own summary line (which states the
peak it measured itself). Memory should not grow with the number of volumes: samples are streamed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import psutil
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medicosam_app.model.random_checkpoint import VIT_B_SAM, write_random_checkpoint  # noqa: E402

SHAPES = [(48, 40, 12), (60, 50, 14)]


def write_labelled_volumes(folder: Path, count: int) -> Path:
    """``count`` volumes with grey/white-matter-like labels (values 1 and 2) in ``labels/final``."""
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in range(count):
        shape = SHAPES[n % len(SHAPES)]
        k, j, i = np.meshgrid(*[np.arange(s) for s in shape[::-1]], indexing="ij")
        label = np.zeros(shape[::-1], np.uint8)
        for value in (1, 2):
            centre = [rng.uniform(0.3, 0.7) * s for s in shape[::-1]]
            radius = [rng.uniform(0.15, 0.25) * s for s in shape[::-1]]
            inside = sum(((a - c) / r) ** 2 for a, c, r in zip((k, j, i), centre, radius)) <= 1
            label[inside & (label == 0)] = value
        image = rng.normal(100, 20, label.shape) + 300 * (label == 1) + 600 * (label == 2)
        for array, path in ((image.astype(np.float32), folder / f"volume_{n}.nii.gz"), (label, labels / f"volume_{n}.nii.gz")):
            written = sitk.GetImageFromArray(array)
            written.SetSpacing((0.9, 0.9, 3.0))
            sitk.WriteImage(written, str(path))
    return folder


def peak_rss(process: subprocess.Popen, every_s: float = 0.1) -> Tuple[int, List[Tuple[float, int]]]:
    """The largest resident set size of ``process`` and its children while it runs, and the curve."""
    root = psutil.Process(process.pid)
    curve: List[Tuple[float, int]] = []
    started = time.monotonic()
    while process.poll() is None:
        try:
            total = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
        except psutil.Error:
            break
        curve.append((time.monotonic() - started, total))
        time.sleep(every_s)
    return max((rss for _, rss in curve), default=0), curve


def run(volumes: int, checkpoint: Path, epochs: int, precision: str, root: Path) -> None:
    studies = write_labelled_volumes(root / f"studies_{volumes}", volumes)
    env = dict(os.environ, MEDICOSAM_CHECKPOINT=str(checkpoint), MEDICOSAM_CACHE_DIR=str(root / f"cache_{volumes}"),
               MEDICOSAM_DOWNLOAD="false", MEDICOSAM_PRECISION=precision)
    command = [sys.executable, "-m", "medicosam_app", "finetune", "--studies", str(studies), "--force",
               "--epochs", str(epochs), "--quiet"]
    started = time.perf_counter()
    output = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    peak, curve = peak_rss(process)
    seconds = time.perf_counter() - started
    output.seek(0)
    lines = output.read().decode(errors="replace").strip().splitlines()
    summary = next((line for line in reversed(lines) if "peak" in line.lower()), lines[-1] if lines else "")
    print(f"{volumes} volume(s): peak RSS {peak / 2**30:.2f} GiB over {seconds:.0f} s (exit {process.returncode})")
    print(f"    {summary[:400]}")
    if process.returncode:
        print("\n".join(lines[-15:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--precision", default="fp32", help="the encoder's precision (auto times this machine)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; ViT-B shape, random weights, "
          f"{args.epochs} epoch(s), precision {args.precision}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        checkpoint = write_random_checkpoint(root / "vit_b_random.pt", VIT_B_SAM)
        for volumes in args.volumes:
            run(volumes, checkpoint, args.epochs, args.precision, root)


if __name__ == "__main__":
    main()
