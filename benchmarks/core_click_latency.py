"""Click latency of the core (no server): cold click, warm clicks, and the bare encoder and decoder.

    python benchmarks/core_click_latency.py [--arch vit_b|tiny] [--clicks 30] [--device cpu|cuda]

Random weights in the real ViT-B shape give honest timings without the real weights. Prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medicosam_app.geometry.coordinates import SliceView  # noqa: E402
from medicosam_app.embeddings.intensity import IntensityPolicy, slice_to_rgb  # noqa: E402
from medicosam_app.api import PromptFields  # noqa: E402
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter  # noqa: E402
from medicosam_app.model.provider import ModelProvider  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from medicosam_app.geometry.volume import read_volume  # noqa: E402


def _phantom(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample-data"))
    import SimpleITK as sitk
    from build_datastore import make_ct_phantom

    path = folder / "phantom_ct.nii.gz"
    sitk.WriteImage(make_ct_phantom(), str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["vit_b", "tiny"], default="vit_b")
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = write_random_checkpoint(folder / "sam.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
        image = _phantom(folder)
        models = ModelProvider(str(checkpoint), allow_download=False, device=args.device)
        segmenter = InteractiveSegmenter(models)
        predictor = models.predictor()
        sync = torch.cuda.synchronize if predictor.device.type == "cuda" else (lambda: None)

        volume = read_volume(image)
        view = SliceView.create(volume.shape, volume.direction, 2)
        rgb = slice_to_rgb(view.extract(volume.array, 20), IntensityPolicy().volume_range(volume.array))
        predictor.encode(rgb)  # warm-up (allocations, kernels)
        sync()
        t0 = time.perf_counter()
        embedding = predictor.encode(rgb)
        sync()
        bare_encode = time.perf_counter() - t0
        t0 = time.perf_counter()
        predictor.predict(embedding, np.array([[40.0, 50.0]]), np.array([1]))
        sync()
        bare_decode = time.perf_counter() - t0

        def click(point, reset):
            start = time.perf_counter()
            result = segmenter.segment(image, PromptFields.read({"foreground": [point]}).prompts(), ClickContext("phantom", reset_state=reset))
            sync()
            return time.perf_counter() - start, result

        cold, result = click([38, 40, 18], True)
        assert not result.embedding_cached
        rng = np.random.default_rng(0)
        warm = []
        for n in range(args.clicks):
            seconds, result = click([int(rng.integers(20, 100)), int(rng.integers(20, 80)), 18], n % 5 == 0)
            assert result.embedding_cached
            warm.append(seconds)

    warm_ms = sorted(1000 * s for s in warm)
    p95 = warm_ms[min(len(warm_ms) - 1, int(round(0.95 * (len(warm_ms) - 1))))]
    print(f"model: {args.arch} random weights, device {predictor.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"bare encoder (1 slice, 1024²): {bare_encode * 1000:9.1f} ms")
    print(f"bare decoder (1 point):        {bare_decode * 1000:9.1f} ms")
    print(f"cold click (core):             {cold * 1000:9.1f} ms  = {cold / (bare_encode + bare_decode):.2f} x (encoder + decoder)")
    print(f"warm click (core), {len(warm)} clicks: p50 {statistics.median(warm_ms):.1f} ms, p95 {p95:.1f} ms")


if __name__ == "__main__":
    main()
