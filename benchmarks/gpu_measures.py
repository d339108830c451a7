"""What the GPU check measures with: its report, timing, the matmul peak, segment_anything's own preprocessing, the
probe's masks and a synthetic CT (see gpu_check.py)."""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch

from medicosam_app.model.precision_choice import probe_prompts
from medicosam_app.model.predictor import ImageEmbedding, PromptPredictor


class Report:
    """Rows printed as they come, so a run cut short still shows what it measured."""

    def __init__(self) -> None:
        self.failures: List[str] = []

    @staticmethod
    def section(title: str) -> None:
        print(f"\n## {title}", flush=True)

    @staticmethod
    def row(what: str, value: str, note: str = "") -> None:
        print(f"  {what:58s} {value:>18s}  {note}", flush=True)

    def attempt(self, what: str, measure: Callable[[], None]) -> None:
        try:
            measure()
        except Exception as error:  # a row this machine cannot run is reported, never fatal
            self.failures.append(what)
            self.row(what, "failed", f"{type(error).__name__}: {str(error).splitlines()[0][:120]}" if str(error) else type(error).__name__)
            traceback.print_exc(limit=3, file=sys.stderr)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.2f} ms"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmups: int = 1) -> float:
    """Median seconds of ``fn`` after ``warmups`` calls."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    a = torch.randn(size, size, device=device, dtype=torch.float32).to(dtype)
    b = torch.randn(size, size, device=device, dtype=torch.float32).to(dtype)
    seconds = timed(lambda: a @ b, device, repeats, warmups=2)
    return 2 * size**3 / seconds / 1e12


def sam_input(sam, images: List[np.ndarray], device: torch.device) -> torch.Tensor:
    """segment_anything's own preprocessing (ResizeLongestSide, normalise, pad) of uint8 images, as SamPredictor does."""
    from segment_anything.utils.transforms import ResizeLongestSide

    transform = ResizeLongestSide(sam.image_encoder.img_size)
    pixels = torch.stack([torch.as_tensor(transform.apply_image(image), device=device).permute(2, 0, 1) for image in images])
    return sam.preprocess(pixels.float())


def probe_masks(predictor: PromptPredictor, embedding: ImageEmbedding) -> List[np.ndarray]:
    masks = []
    for points, box in probe_prompts():
        labels = None if points is None else np.ones(len(points), dtype=int)
        masks.append(predictor.predict(embedding, points, labels, box).mask)
    return masks


def mean_iou(ours: List[np.ndarray], reference: List[np.ndarray]) -> float:
    values = []
    for a, b in zip(ours, reference):
        union = np.logical_or(a, b).sum()
        values.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
    return float(np.mean(values))


def synthetic_ct(path: Path, slices: int, side: int) -> Path:
    """A CT-like volume (HU): a body ellipse with organs that move from slice to slice, noise; written uncompressed."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:side, :side] / side
    volume = np.empty((slices, side, side), dtype=np.int16)
    for k in range(slices):
        t = k / max(slices - 1, 1)
        hu = np.full((side, side), -1000.0)
        hu[((rows - 0.5) / 0.42) ** 2 + ((cols - 0.5) / 0.36) ** 2 <= 1] = 40
        hu[((rows - 0.45) / (0.12 + 0.05 * t)) ** 2 + ((cols - 0.33) / 0.1) ** 2 <= 1] = 60  # liver, growing
        hu[((rows - 0.72) / 0.05) ** 2 + ((cols - 0.5) / 0.05) ** 2 <= 1] = 700  # spine
        volume[k] = hu + rng.normal(0, 15, hu.shape)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.7, 1.0))
    sitk.WriteImage(image, str(path))
    return path
