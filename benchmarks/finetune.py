"""Interactive finetuning: time per epoch at MedicoSAM's real shape, and evaluate's table before and after.

    python benchmarks/finetune.py [--device cpu|cuda] [--objects 16] [--sub-iterations 8] [--skip-small-case]
                                  [--encoder frozen|lora|full]

Speed: a ViT-B-shaped SAM with random weights; ``--objects`` synthetic objects (discs and boxes of varied
size) on 512² slices whose embeddings are already cached (random features: with the default frozen encoder
finetuning never runs the encoder). One epoch of simulated sessions, timed, so ``objects × epochs`` of a
site's data can be priced. ``--encoder lora|full`` times the encoder's finetuning instead: every object's
slice then goes through the encoder forward and backward (use few objects on a CPU).

Small case (unless ``--skip-small-case``): the MNI sample 4× smaller (four subjects, one held out by the
gate's hash split), a tiny SAM with random weights. ``evaluate``'s table with the checkpoint's decoder, one
finetuning round, and the table again with the served version. Those figures show the loop works end to
end on a CPU; they say nothing of MedicoSAM's own quality.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from small_case import small_case  # noqa: E402
from medicosam_app.embeddings.key import EmbeddingKey  # noqa: E402
from medicosam_app.embeddings.memory_cache import EmbeddingCache  # noqa: E402
from medicosam_app.finetune.config import FinetuneConfig  # noqa: E402
from medicosam_app.finetune.samples import ObjectSample  # noqa: E402
from medicosam_app.finetune.training import finetune  # noqa: E402
from medicosam_app.model.predictor import ImageEmbedding  # noqa: E402
from medicosam_app.model.random_checkpoint import VIT_B_SAM  # noqa: E402
from medicosam_app.model.sam_builder import build_sam  # noqa: E402


def synthetic_objects(count: int, size: int = 512):
    """Discs and boxes of varied size and place on ``size``² slices, each slice with its own cached features
    and its image (the object bright on noise) for an encoder that trains."""
    rng = np.random.default_rng(0)
    embeddings = EmbeddingCache(max_bytes=4 << 30)
    samples = []
    rows, cols = np.mgrid[:size, :size]
    for n in range(count):
        radius = int(rng.integers(12, 80))
        cy, cx = (int(v) for v in rng.integers(radius + 2, size - radius - 2, size=2))
        if n % 2:
            mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
        else:
            mask = (abs(rows - cy) <= radius) & (abs(cols - cx) <= radius // 2)
        key = EmbeddingKey(f"synthetic{n}", 2, 0, "bench", "bench", "r0+c1+")
        features = torch.randn(1, 256, 64, 64)
        embeddings.put(key, ImageEmbedding(features=features, original_size=(size, size)))
        grey = np.clip(rng.normal(60, 15, mask.shape) + 140 * mask, 0, 255).astype(np.uint8)
        samples.append(ObjectSample(f"synthetic{n}", 0, key, mask, np.repeat(grey[:, :, None], 3, axis=2)))
    return samples, embeddings


def speed(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    sam = build_sam(VIT_B_SAM).to(device)
    samples, embeddings = synthetic_objects(args.objects)
    config = FinetuneConfig(epochs=1, sub_iterations=args.sub_iterations, batch_size=8, encoder=args.encoder)
    started = time.perf_counter()
    outcome = finetune(sam, samples, [], embeddings, config, device, progress=False)
    total = time.perf_counter() - started
    per_prediction = outcome.seconds_per_epoch / (args.objects * args.sub_iterations)
    trained = "decoder" if args.encoder == "frozen" else f"decoder + encoder ({args.encoder})"
    print(f"ViT-B {trained}, {args.objects} objects × {args.sub_iterations} predictions, 512² slices, {device}: "
          f"{outcome.seconds_per_epoch:.1f} s per epoch ({per_prediction * 1000:.0f} ms per prediction, "
          f"{outcome.seconds_per_epoch / args.objects:.1f} s per object, forward + backward); {total:.1f} s with set-up",
          flush=True)


def small(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        studies, checkpoint = small_case(Path(folder))
        common = ["--studies", str(studies), "--checkpoint", str(checkpoint), "--cache-dir", f"{folder}/cache",
                  "--precision", "fp32", "--quiet"]
        evaluate = [sys.executable, "-m", "medicosam_app", "evaluate", *common, "--max-slices-per-image", "8"]
        print("\nBefore finetuning (the checkpoint's decoder), all four subjects:", flush=True)
        subprocess.run(evaluate, check=True, cwd=REPO)
        options = ["--epochs", "10", "--learning-rate", "0.005", "--sub-iterations", "4", "--max-slices-per-image", "8",
                   "--gate-slices-per-image", "8"]
        print(f"\nFinetuning: {' '.join(options)}", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "medicosam_app", "finetune", *common, *options], check=True, cwd=REPO)
        print(f"round: {time.perf_counter() - started:.0f} s", flush=True)
        print("\nAfter finetuning (the served version), all four subjects (three were trained on):", flush=True)
        subprocess.run(evaluate, check=True, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--sub-iterations", type=int, default=8)
    parser.add_argument("--skip-small-case", action="store_true")
    parser.add_argument("--encoder", choices=["frozen", "lora", "full"], default="frozen")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    speed(args)
    if not args.skip_small_case:
        small(args)


if __name__ == "__main__":
    main()
