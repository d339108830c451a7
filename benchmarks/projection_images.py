"""Clicks on 2D images against a click on one CT slice, and a box followed through an ultrasound clip.

    python benchmarks/projection_images.py [--arch vit_b|tiny] [--frames 64] [--ct-slices 16] [--warm 20]
                                           [--device cpu|cuda] [--precision fp32|auto|...]

Random weights in the real ViT-B shape, in the core (what a server click costs minus HTTP; the server adds
~10 ms). Images, all made here, asymmetric: a 512² CT slice (the reference), a 4084 × 3328 14-bit MONOCHROME1
mammogram and a 2k chest radiograph as DICOM, a 1280 × 1024 colour endoscopy PNG, and a 640 × 480 colour
ultrasound clip of ``--frames`` frames. For each image: the cold click (read + present + encode + decode; the
image file read is timed apart) and warm clicks (p50, p95), the answer's size as the server sends it (NRRD,
gzip), then the clip's propagation in frames per second beside a CT's (``--ct-slices`` slices of 512²) in slices
per second, one table. Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from medicosam_app.geometry.volume import read_volume, write_label  # noqa: E402
from medicosam_app.interactive.propagation_settings import PropagationSettings  # noqa: E402
from medicosam_app.api import PromptFields  # noqa: E402
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter  # noqa: E402
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from medicosam_app.services import build_model_provider, build_slice_embedder  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402
from projection_files import asymmetric_picture, write_dicom  # noqa: E402


def _images(folder: Path, frames: int, ct_slices: int) -> dict:
    from PIL import Image

    import SimpleITK as sitk

    made = {}
    ct = (asymmetric_picture(512, 512, frames=max(3, ct_slices)).astype(np.int16) - 1000)
    sitk.WriteImage(sitk.GetImageFromArray(ct), str(folder / "ct.nii.gz"))
    made["CT slice 512²"] = (folder / "ct.nii.gz", [256, 240, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mammogram = (asymmetric_picture(4084, 3328) * 4).clip(0, 16383)
        made["mammogram 3328×4084 MONOCHROME1"] = (write_dicom(
            folder / "mg.dcm", 16383 - mammogram, "MG", "MONOCHROME1", ImagerPixelSpacing=[0.07, 0.07],
            BitsStored=14, HighBit=13), [1900, 1500, 0])
        made["chest radiograph 2048²"] = (write_dicom(folder / "dx.dcm", asymmetric_picture(2048, 2048), "DX"),
                                         [1000, 900, 0])
        clip = asymmetric_picture(480, 640, frames=frames, colour=True)
        clip_path = write_dicom(folder / "us.dcm", clip, "US", frames=True, FrameTime=33.3)
    Image.fromarray(asymmetric_picture(1024, 1280, colour=True)).save(folder / "endoscopy.png")
    made["endoscopy PNG 1280×1024 RGB"] = (folder / "endoscopy.png", [600, 500, 0])
    return made, clip_path, folder / "ct.nii.gz"


def _percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["vit_b", "tiny"], default="vit_b")
    parser.add_argument("--frames", type=int, default=64, help="frames of the ultrasound clip")
    parser.add_argument("--ct-slices", type=int, default=16, help="slices of the CT the clip is compared with")
    parser.add_argument("--warm", type=int, default=20, help="warm clicks per image")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32", help="encoder precision (auto measures first)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = write_random_checkpoint(folder / "random.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
        conf = {"checkpoint": str(checkpoint), "download": "false", "embedding_disk_dir": "off",
                "prefetch_radius": "0", "precision": args.precision}
        if args.device:
            conf["device"] = args.device
        settings = Settings.from_conf(conf)
        models = build_model_provider(settings)
        models.predictor()
        images, clip_path, ct_path = _images(folder, args.frames, args.ct_slices)
        print(f"{'image':34s} {'read s':>7s} {'cold s':>7s} {'warm p50 ms':>12s} {'p95 ms':>8s} {'answer KiB':>11s}")
        cold_reference = None
        for name, (path, click) in images.items():
            segmenter = InteractiveSegmenter(models, embedder=build_slice_embedder(settings, models))
            started = time.perf_counter()
            segmenter.volumes.get(path)
            read = time.perf_counter() - started
            started = time.perf_counter()
            result = segmenter.segment(path, PromptFields.read({"foreground": [click]}).prompts(), ClickContext(name))
            cold = time.perf_counter() - started + read
            warm = []
            for n in range(args.warm):
                started = time.perf_counter()
                segmenter.segment(path, PromptFields.read({"foreground": [click, [click[0] + 5 + n, click[1] + 3, click[2]]]}).prompts(),
                                  ClickContext(name))
                warm.append((time.perf_counter() - started) * 1000)
            answer = write_label(result.label, result.volume, ".nrrd", directory=folder, compress=True)
            size = os.path.getsize(answer) / 1024
            cold_reference = cold_reference or cold
            print(f"{name:34s} {read:7.2f} {cold:7.2f} {statistics.median(warm):12.1f} {_percentile(warm, 95):8.1f} "
                  f"{size:11.1f}   cold = {cold / cold_reference:.2f} × the CT slice's")

        print()
        segmenter = VolumeSegmenter(models, build_slice_embedder(settings, models))
        relaxed = PropagationSettings(iou_threshold=0.0, min_predicted_iou=0.0)
        print(f"{'propagation':34s} {'run':>5s} {'slices':>7s} {'seconds':>8s} {'per s':>7s} {'encode s':>9s} "
              f"{'decode s':>9s}")
        for name, path, box in (("CT 512², slices", ct_path, [180, 330, 170, 320]),
                                ("ultrasound clip 640×480 RGB, frames", clip_path, [250, 390, 150, 330])):
            k = read_volume(path).shape[2] // 2
            request = {"roi": box + [k, k]}  # a box on the middle slice or frame, followed both ways
            for run in ("cold", "warm"):
                started = time.perf_counter()
                outcome = segmenter.segment(path, PromptFields.read(dict(request, reset_state=True)).prompts(), ClickContext(name),
                                            settings=relaxed)
                seconds = time.perf_counter() - started
                count = len(outcome.result.masks)
                print(f"{name:34s} {run:>5s} {count:7d} {seconds:8.2f} {count / seconds:7.2f} "
                      f"{outcome.latencies.get('encode', 0):9.2f} {outcome.latencies.get('decode', 0):9.2f}")


if __name__ == "__main__":
    main()
