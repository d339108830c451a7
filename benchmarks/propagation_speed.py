"""Propagation speed of ``medicosam_3d`` in the core: slices per second, encoding vs decoding, cold and warm.

    python benchmarks/propagation_speed.py [--arch vit_b|tiny] [--slices 6] [--device cpu|cuda]

Random weights in the real ViT-B shape; the stop rule is relaxed so the walk covers exactly the ROI's
slices. Cold: nothing cached, every slice encoded. Warm: the same request again after a reset, with the
embeddings cached (what a correction or a second structure on the same image costs). Prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medicosam_app.interactive.slice_segmenter import ClickContext  # noqa: E402
from medicosam_app.interactive.propagation_settings import PropagationSettings  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from medicosam_app.services import build_model_provider, build_slice_embedder  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402
from medicosam_app.geometry.volume import read_volume  # noqa: E402
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter  # noqa: E402

DEFAULT_IMAGE = REPO / "sample-data" / "datastore" / "mni152_t1.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["vit_b", "tiny"], default="vit_b")
    parser.add_argument("--slices", type=int, default=6, help="slices in the ROI (the propagation length)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    args = parser.parse_args()
    if not args.image.exists():
        sys.exit(f"{args.image} is missing: run  python sample-data/build_datastore.py  first")

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_random_checkpoint(Path(tmp) / "random.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
        conf = {"checkpoint": str(checkpoint), "download": "false", "embedding_disk_dir": "off", "prefetch_radius": "0"}
        if args.device:
            conf["device"] = args.device
        settings = Settings.from_conf(conf)
        models = build_model_provider(settings)
        models.predictor()
        segmenter = VolumeSegmenter(models, build_slice_embedder(settings, models))
        shape = read_volume(args.image).shape
        k = shape[2] // 2
        k0, k1 = k - args.slices // 2, k - args.slices // 2 + args.slices - 1
        i, j = shape[0] // 2, shape[1] // 2
        request = {"foreground": [[i, j, k]], "roi": [i - 30, i + 30, j - 30, j + 30, k0, k1]}
        relaxed = PropagationSettings(iou_threshold=0.0, min_predicted_iou=0.0)

        rows = []
        for run in ("cold", "warm"):
            started = time.perf_counter()
            outcome = segmenter.segment(args.image, request, ClickContext("bench", reset_state=True), settings=relaxed)
            total = time.perf_counter() - started
            count = len(outcome.result.recomputed)
            rows.append((run, count, total, outcome.latencies["encode"], outcome.latencies["decode"]))

    print(f"\nimage {args.image.name} {shape}, ROI slices {k0}..{k1}, model {args.arch} (random weights), "
          f"device {models.status['device']}, precision {models.status['precision']}")
    for run, count, total, encode, decode in rows:
        print(f"{run}: {count} slices in {total:7.2f} s = {count / total:6.2f} slices/s   "
              f"(encode {encode:7.2f} s = {encode / count * 1000:8.1f} ms/slice, decode {decode:6.2f} s = {decode / count * 1000:6.1f} ms/slice)")


if __name__ == "__main__":
    main()
