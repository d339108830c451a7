"""Propagation speed of ``medicosam_3d`` in the core: slices per second, encoding vs decoding, cold and warm.

    python benchmarks/propagation_speed.py [--arch vit_b|tiny] [--slices 6] [--device cpu|cuda] [--batch-size N]
    python benchmarks/propagation_speed.py --cine [--frames 64] ...

Random weights in the real ViT-B shape; the stop rule is relaxed so the walk covers exactly the ROI's
slices. Cold: nothing cached, every slice encoded. Warm: the same request again after a reset, with the
embeddings cached (what a correction or a second structure on the same image costs). ``--cine``: a synthetic
600×800 2D+time clip (a bright disc moving over a textured background) instead of the MNI image, with a box
drawn on its middle frame: a flat ROI, followed both ways through every frame the walk reaches (with random
weights an empty mask may still stop it early: the stops are printed). Prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medicosam_app.api import PromptFields  # noqa: E402
from medicosam_app.interactive.slice_segmenter import ClickContext  # noqa: E402
from medicosam_app.interactive.propagation_settings import PropagationSettings  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from medicosam_app.services import build_model_provider, build_slice_embedder  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402
from medicosam_app.geometry.volume import read_volume  # noqa: E402
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter  # noqa: E402

DEFAULT_IMAGE = REPO / "sample-data" / "datastore" / "mni152_t1.nii.gz"
CINE_SIZE = (600, 800)  # (i, j) of one frame: an ultrasound / endoscopy frame, not square, not 1024²
DISC_RADIUS = 60


def disc_centre(frame: int, frames: int) -> Tuple[float, float]:
    """Where the disc is on ``frame``: left to right across the frame, bobbing up and down once."""
    t = frame / max(frames - 1, 1)
    return CINE_SIZE[0] / 2 + 80 * np.sin(2 * np.pi * t), 150 + t * (CINE_SIZE[1] - 300)


def write_cine(path: Path, frames: int) -> Path:
    """A uint8 clip ``[i, j, frame]`` saved as NIfTI (spacing 0.2 mm in plane, 1 per frame): a bright disc moving
    over a fixed texture plus per-frame noise, so that neither a blank frame nor a repeated one is encoded."""
    import SimpleITK as sitk
    from scipy import ndimage

    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.normal(size=CINE_SIZE), 6)
    texture = 40 + 50 * (texture - texture.min()) / np.ptp(texture)
    rows, cols = np.mgrid[: CINE_SIZE[0], : CINE_SIZE[1]]
    clip = np.empty((*CINE_SIZE, frames), dtype=np.uint8)
    for frame in range(frames):
        ci, cj = disc_centre(frame, frames)
        picture = texture + rng.normal(0, 6, CINE_SIZE)
        picture[(rows - ci) ** 2 + (cols - cj) ** 2 <= DISC_RADIUS**2] = 210
        clip[:, :, frame] = np.clip(picture, 0, 255).astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(clip.transpose(2, 1, 0)))  # SimpleITK wants [k, j, i]
    image.SetSpacing((0.2, 0.2, 1.0))
    sitk.WriteImage(image, str(path))
    return path


def volume_request(shape: Tuple[int, ...], slices: int) -> Tuple[Dict[str, Any], Tuple[int, int]]:
    """A point in the middle of the volume and a 3D ROI of ``slices`` slices around it (the walk's bounds)."""
    k = shape[2] // 2
    k0, k1 = k - slices // 2, k - slices // 2 + slices - 1
    i, j = shape[0] // 2, shape[1] // 2
    return {"foreground": [[i, j, k]], "roi": [i - 30, i + 30, j - 30, j + 30, k0, k1]}, (k0, k1)


def cine_request(frames: int) -> Tuple[Dict[str, Any], Tuple[int, int]]:
    """A box round the disc on the middle frame, one frame thick: a flat ROI, which the walk follows both ways as
    far as it goes (volume_segmenter.propagation_bounds), here to every frame."""
    k = frames // 2
    ci, cj = disc_centre(k, frames)
    margin = DISC_RADIUS + 10
    roi = [int(ci - margin), int(ci + margin), int(cj - margin), int(cj + margin), k, k]
    return {"roi": roi}, (0, frames - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["vit_b", "tiny"], default="vit_b")
    parser.add_argument("--slices", type=int, default=6, help="slices in the ROI (the propagation length)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="slices per encoder pass (default: the model's own choice, encode_batch_size auto)")
    parser.add_argument("--cine", action="store_true", help="a synthetic 2D+time clip, a box on its middle frame")
    parser.add_argument("--frames", type=int, default=64, help="frames of the --cine clip")
    args = parser.parse_args()
    if not args.cine and not args.image.exists():
        sys.exit(f"{args.image} is missing: run  python sample-data/build_datastore.py  first")

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_random_checkpoint(Path(tmp) / "random.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
        conf = {"checkpoint": str(checkpoint), "download": "false", "embedding_disk_dir": "off", "prefetch_radius": "0"}
        if args.device:
            conf["device"] = args.device
        if args.batch_size:
            conf["encode_batch_size"] = str(args.batch_size)
        settings = Settings.from_conf(conf)
        models = build_model_provider(settings)
        models.predictor()
        segmenter = VolumeSegmenter(models, build_slice_embedder(settings, models))
        image = write_cine(Path(tmp) / "cine.nii.gz", args.frames) if args.cine else args.image
        shape = read_volume(image).shape
        request, (k0, k1) = cine_request(args.frames) if args.cine else volume_request(shape, args.slices)
        prompts = PromptFields.read(request).prompts()
        relaxed = PropagationSettings(iou_threshold=0.0, min_predicted_iou=0.0)

        rows = []
        for run in ("cold", "warm"):
            started = time.perf_counter()
            outcome = segmenter.segment(image, prompts, ClickContext("bench", reset_state=True), axis=2, settings=relaxed)
            total = time.perf_counter() - started
            count = len(outcome.result.recomputed)
            rows.append((run, count, total, outcome.latencies["encode"], outcome.latencies["decode"]))
        stops = {end: reason for end, reason in outcome.result.stops.items() if reason}

    unit = "frames" if args.cine else "slices"
    per = unit[:-1]
    status = models.status
    batch = (status.get("encode_batch") or {}).get("chosen")
    attention = (status.get("attention") or {}).get("form")
    where = f"box on frame {request['roi'][4]} (flat ROI), walk {k0}..{k1}" if args.cine else f"ROI slices {k0}..{k1}"
    print(f"\nimage {Path(image).name} {shape}, {where}, model {args.arch} (random weights), "
          f"device {status['device']}, precision {status['precision']}, encoder batch {batch}, attention {attention}")
    for run, count, total, encode, decode in rows:
        print(f"{run}: {count} {unit} in {total:7.2f} s = {count / total:6.2f} {unit}/s   "
              f"(encode {encode:7.2f} s = {encode / count * 1000:8.1f} ms/{per}, "
              f"decode {decode:6.2f} s = {decode / count * 1000:6.1f} ms/{per})")
    if stops:  # random weights: an empty mask ends a walk before its bounds
        print(f"stopped early: {stops}")


if __name__ == "__main__":
    main()
