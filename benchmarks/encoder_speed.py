"""The image encoder on this machine: its matmul peaks, the limit they set, every variant's time and mask
agreement, and the precision ``auto`` chooses.

    python benchmarks/encoder_speed.py [--device cpu|cuda] [--repeats N] [--compile] [--only WORD ...]

ViT-B at 1024² with random weights (the real weights cannot be downloaded here; speed does not depend on
them). The limit: the encoder's ~972 GFLOP per slice at the machine's best square-matmul rate (8192² on a
GPU, 2048² on a CPU); "× limit" is a variant's median time over it. Times: the median of ``--repeats``
encodes after a warm-up (default 10 on a GPU, 1 on a CPU). Agreement: mean mask IoU against
segment-anything's fp32 encoder over the probe prompts ``precision auto`` uses (16 points, 3 boxes on a
fixed synthetic slice), each decoded in fp32.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medicosam_app.model.attention import use_fused_attention  # noqa: E402
from medicosam_app.model.memory_layout import use_channels_last_decoder, use_contiguous_encoder_tokens  # noqa: E402
from medicosam_app.model.precision_choice import (  # noqa: E402
    choose_precision,
    device_description,
    probe_prompts,
    probe_slice,
)
from medicosam_app.model.predictor import PromptPredictor  # noqa: E402
from medicosam_app.model.random_checkpoint import VIT_B_SAM  # noqa: E402
from medicosam_app.runtime.heap import keep_large_buffers  # noqa: E402
from medicosam_app.model.sam_builder import build_sam  # noqa: E402

ENCODER_GFLOP = 972.0  # ViT-B image encoder, one 1024² input (multiply-adds × 2)


GPU_MATMUL = 8192  # a small product leaves a GPU idle between launches: 512² bf16 read 1.9 TFLOP/s on an H200
CPU_MATMUL = 2048  # not 4096²: on a CPU without bf16 units the bf16 product alone took minutes
CPU_SCREEN = 512  # bf16 on such a CPU runs at well under 1 GFLOP/s, where even one 2048² product takes minutes


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 2) -> float:
    """GFLOP/s of one square ``size``² matmul: the fastest of ``repeats`` after a warm-up."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: kernel choice, allocations
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / min(times) / 1e9


def matmul_peaks(device: torch.device) -> Dict[str, Tuple[int, float]]:
    """(matmul size, GFLOP/s) per dtype: every one at 8192² on a GPU; on a CPU fp32 and bf16 at 2048², but bf16
    from a 512² screen alone where that shows no bf16 units."""
    if device.type == "cuda":
        return {name: (GPU_MATMUL, matmul_peak(device, dtype, GPU_MATMUL, repeats=5))
                for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16))}
    peaks = {"fp32": (CPU_MATMUL, matmul_peak(device, torch.float32, CPU_MATMUL))}
    small = matmul_peak(device, torch.bfloat16, CPU_SCREEN, repeats=1)
    if small < 0.05 * peaks["fp32"][1]:  # no bf16 units: the screen is the figure
        peaks["bf16"] = (CPU_SCREEN, small)
    else:
        peaks["bf16"] = (CPU_MATMUL, matmul_peak(device, torch.bfloat16, CPU_MATMUL))
    return peaks


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def masks(predictor: PromptPredictor, decoder: PromptPredictor, image: np.ndarray):
    embedding = predictor.encode(image)
    out = []
    for points, box in probe_prompts():
        labels = None if points is None else np.ones(len(points), dtype=int)
        out.append(decoder.predict(embedding, points, labels, box).mask)
    return out


def mean_iou(ours, reference) -> float:
    values = []
    for a, b in zip(ours, reference):
        union = np.logical_or(a, b).sum()
        values.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed encodes per variant after a warm-up, median shown (default: 10 on a GPU, 1 on a CPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the encoder (slow to build)")
    parser.add_argument("--only", nargs="+", help="time only the variants whose name contains one of these words")
    parser.add_argument("--malloc-tuning", choices=["on", "off"], default="on",
                        help="glibc malloc as the server tunes it (runtime/heap.py; default) or as it comes")
    args = parser.parse_args()
    heap = keep_large_buffers() if args.malloc_tuning == "on" else {"applied": False}
    device = torch.device(args.device)
    repeats: int = args.repeats or (10 if device.type == "cuda" else 1)  # a GPU encode is ~ms: one is noise
    print(f"machine: {device_description(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"malloc tuning {'on' if heap['applied'] else 'off'}")

    peaks = matmul_peaks(device)
    # TFLOP/s on a GPU, GFLOP/s on a CPU: each in the range where its figures read without a long tail.
    unit, scale = ("TFLOP/s", 1e-3) if device.type == "cuda" else ("GFLOP/s", 1.0)
    for name, (size, gflops) in peaks.items():
        print(f"{size:4d}² matmul {name}: {gflops * scale:9.1f} {unit}  ⇒ encoder limit "
              f"{ENCODER_GFLOP / gflops * 1000:9.2f} ms per 1024² slice", flush=True)
    limit_ms = ENCODER_GFLOP / max(gflops for _, gflops in peaks.values()) * 1000

    torch.manual_seed(0)
    base = build_sam(VIT_B_SAM).eval()
    image = np.repeat(np.kron(probe_slice(256)[:, :, 0], np.ones((4, 4), dtype=np.uint8))[:, :, None], 3, axis=2)  # 1024²
    reference_predictor = PromptPredictor(base, device, "fp32")
    reference_masks = masks(reference_predictor, reference_predictor, image)

    fused = copy.deepcopy(base)
    use_fused_attention(fused)
    use_channels_last_decoder(fused)
    use_contiguous_encoder_tokens(fused)
    variants = [  # fp32 first: on a CPU without bf16 units the bf16 rows take minutes
        ("segment-anything fp32", base, "fp32"),
        ("ours: fused attention fp32", fused, "fp32"),
        ("segment-anything bf16 autocast", base, "bf16"),
        ("ours: fused attention bf16", fused, "bf16"),
    ]
    if device.type == "cuda":
        variants.append(("ours: fused attention fp16", fused, "fp16"))
        # The bias as extra q/k channels lets the flash / memory-efficient kernels run (model/attention.py);
        # on a CPU the mask form is the faster one, so the row is left out there.
        channels = copy.deepcopy(fused)
        use_fused_attention(channels, "channels")
        variants.append(("ours: fused attention bf16, bias as channels", channels, "bf16"))
    if device.type == "cpu":  # precision int8: the server's own quantised copy (model/int8_encoder.py)
        variants.append(("ours: fused attention int8 (Linear layers)", fused, "int8"))
    if args.compile:
        compiled = copy.deepcopy(fused)
        compiled.image_encoder = torch.compile(compiled.image_encoder)
        variants.append(("ours: torch.compile fp32", compiled, "fp32"))
        # bf16 apart: one compiled module under two autocast states would be rebuilt for each.
        compiled_bf16 = copy.deepcopy(fused)
        compiled_bf16.image_encoder = torch.compile(compiled_bf16.image_encoder)
        variants.append(("ours: torch.compile bf16", compiled_bf16, "bf16"))
        base_compiled = copy.deepcopy(base)
        base_compiled.image_encoder = torch.compile(base_compiled.image_encoder)
        variants.append(("segment-anything bf16 compiled", base_compiled, "bf16"))

    print(f"\n{'variant':48s} {'ms/slice':>10s} {'× limit':>8s} {'mask IoU':>9s}", flush=True)
    results = {}
    if args.only:
        variants = [v for v in variants if any(word in v[0] for word in args.only)]
    for name, sam, precision in variants:
        predictor = PromptPredictor(sam, device, precision)
        try:
            predictor.encode(image)  # warm-up (and the build, for torch.compile)
            times = []
            for _ in range(repeats):
                _sync(device)
                started = time.perf_counter()
                predictor.encode(image)
                _sync(device)
                times.append(time.perf_counter() - started)
        except Exception as error:  # a variant this machine cannot run is reported, not fatal
            print(f"{name:48s} failed: {str(error).splitlines()[0][:80]}")
            continue
        ms = statistics.median(times) * 1000
        agreement = mean_iou(masks(predictor, reference_predictor, image), reference_masks)
        results[name] = ms
        print(f"{name:48s} {ms:10.2f} {ms / limit_ms:8.1f} {agreement:9.3f}", flush=True)

    started = time.perf_counter()
    choice = choose_precision(copy.deepcopy(fused), device, "benchmark", folder=None)
    print(f"\nprecision auto → {choice.chosen}: {choice.reason} (encoder estimate ms {choice.encoder_ms}; "
          f"decided in {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
