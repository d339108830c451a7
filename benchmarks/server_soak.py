"""The server's resident memory over a long session: 1,000 clicks across 50 images, the curve printed.

    python benchmarks/server_soak.py [--arch tiny|vit_b] [--images 50] [--clicks 1000]
                                     [--embedding-cache-mb 64] [--volume-cache-mb 64]

Our server on 127.0.0.1 (random weights in the chosen shape), started as the tests start it, with the
in-memory caches set small so that they fill and evict within the run (the defaults, 2 GB of embeddings and
4 GB of volumes, would take hours of ViT-B clicks on a CPU to fill). Each click, through the Slicer module's
client, lands on a random slice of a random image, so slices are embedded, cached, evicted and embedded
again. The server process's resident set size (RSS) is sampled every 50 clicks; printed: the curve, the
spread over the second half (the target: within ±10 %), and the bound the settings promise (the model after
loading plus both caches and the refinement memory's 64 MB).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from conftest import asymmetric_array, write_volume  # noqa: E402
from medicosam_app.interactive.refinement import RefinementMemory  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from server.harness import running_server, slicer_client, wait_for_model  # noqa: E402

SLICER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}


def server_process() -> psutil.Process:
    """The MONAI Label server this process started (the harness's child)."""
    for child in psutil.Process().children(recursive=True):
        if "start_server" in " ".join(child.cmdline()):
            return child
    raise RuntimeError("no server process found")


def write_images(folder: Path, count: int) -> List[Tuple[str, Tuple[int, int, int]]]:
    """``count`` volumes of a few sizes, each asymmetric."""
    shapes = [(96, 80, 24), (64, 72, 32), (80, 96, 16), (72, 64, 40)]
    images = []
    for n in range(count):
        shape = shapes[n % len(shapes)]
        write_volume(folder / f"image_{n:02d}.nii.gz", asymmetric_array(shape, seed=n))
        images.append((f"image_{n:02d}", shape))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "vit_b"], default="tiny")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--clicks", type=int, default=1000)
    parser.add_argument("--embedding-cache-mb", type=int, default=64)
    parser.add_argument("--volume-cache-mb", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        studies = root / "studies"
        studies.mkdir()
        images = write_images(studies, args.images)
        checkpoint = write_random_checkpoint(root / "model.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
        env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_EMBEDDING_CACHE_MB": str(args.embedding_cache_mb),
               "MEDICOSAM_VOLUME_CACHE_MB": str(args.volume_cache_mb)}
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.arch} random weights; "
              f"{args.clicks} clicks over {args.images} images; caches: embeddings {args.embedding_cache_mb} MB, "
              f"volumes {args.volume_cache_mb} MB (other settings default)")
        with running_server(studies, root / "server.log", env=env) as url:
            assert wait_for_model(url, timeout=600)["available"], "the model did not load"
            server = server_process()
            client = slicer_client(url, root / "client")
            image, shape = images[0]
            client.infer("medicosam_interactive", image, {"foreground": [[5, 5, 1]], **SLICER_PARAMS})
            loaded = server.memory_info().rss
            print(f"after loading the model and one click: {loaded / 2**20:.0f} MB")
            curve: List[Tuple[int, int]] = []
            started = time.perf_counter()
            for click in range(1, args.clicks + 1):
                image, shape = images[int(rng.integers(len(images)))]
                point = [int(rng.integers(2, n - 2)) for n in shape]
                client.infer("medicosam_interactive", image, {"foreground": [point], **SLICER_PARAMS})
                if click % 50 == 0:
                    curve.append((click, server.memory_info().rss))
                    print(f"  {click:5d} clicks  {curve[-1][1] / 2**20:7.0f} MB  "
                          f"({(time.perf_counter() - started) / click * 1000:.0f} ms per click)", flush=True)
        second_half = [rss for click, rss in curve if click > args.clicks // 2]
        mean = sum(second_half) / len(second_half)
        spread = max(abs(rss - mean) for rss in second_half) / mean
        refinement_mb = RefinementMemory().max_entries * 256 * 256 * 4 / 2**20  # the last logits per clicked slice
        bound = loaded + (args.embedding_cache_mb + args.volume_cache_mb + refinement_mb) * 2**20
        print(f"second half: mean {mean / 2**20:.0f} MB, spread ±{spread * 100:.1f} % (target ±10 %); "
              f"peak {max(r for _, r in curve) / 2**20:.0f} MB against model + caches + refinement {bound / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
