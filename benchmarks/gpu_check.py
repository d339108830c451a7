"""One GPU check: every figure of the GPU speed table, for this project and for segment_anything side by side, in
one run of a few minutes. Installs nothing; needs the project's environment (scripts/install.sh) and one GPU.

    bash benchmarks/gpu_check.sh                    # = python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py [--slices 512] [--skip-sam-compile] [--device cuda:1]
    python benchmarks/gpu_check.py --device cpu --arch tiny --slices 8 --no-compile   # a smoke run (tests do it)

ViT-B with random weights (speed does not depend on them; the real weights cannot be downloaded everywhere).
Rows:

- the matmul peak (bf16, fp16, fp32 at 8192²) and the limit it sets for one 1024² embedding (972 GFLOP);
- segment_anything as a user runs it: its encoder on a preprocessed 1024² input, fp32, bf16 autocast (one slice
  and a batch of 32), bf16 ``torch.compile`` (one slice and a batch of 8, compile seconds apart);
- this project as the server runs it (settings defaults: precision, attention form and batch size measured,
  embeddings rounded to float16 if the masks agree, blocks compiled in the background), from uint8 slices
  (resize and normalisation included): one slice eager and compiled, a batch, ``precompute`` of a synthetic CT
  (bytes written per slice), a cold propagation through it (encode and decode per slice), a cold and warm click,
  the mask decoder alone (eager and as a CUDA graph), the semantic decoder;
- mask agreement: mean IoU of the probe masks (16 points, 3 boxes) against segment_anything fp32.

Milliseconds with two decimals. Every row that fails prints why and the run goes on.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu_measures import (  # noqa: E402
    Report, matmul_tflops, mean_iou, ms, probe_masks, sam_input, synchronize, synthetic_ct, timed,
)
from medicosam_app.api import PromptFields  # noqa: E402
from medicosam_app.embeddings.precompute import precompute  # noqa: E402
from medicosam_app.interactive.propagation_settings import PropagationSettings  # noqa: E402
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter  # noqa: E402
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter  # noqa: E402
from medicosam_app.model.precision_choice import probe_slice  # noqa: E402
from medicosam_app.model.predictor import PromptPredictor  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from medicosam_app.model.sam_builder import load_sam  # noqa: E402
from medicosam_app.semantic.network import DecoderShape, UNETRDecoder, logits_to_slice  # noqa: E402
from medicosam_app.services import build_model_provider, build_slice_embedder  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402

ENCODER_GFLOP = 972.0  # ViT-B image encoder, one 1024² input (multiply-adds × 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", choices=["vit_b", "tiny"], default="vit_b")
    parser.add_argument("--slices", type=int, default=512, help="slices of the synthetic CT precomputed and propagated")
    parser.add_argument("--side", type=int, default=512, help="rows and columns of each slice")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--no-compile", action="store_true", help="neither compile (a smoke run)")
    parser.add_argument("--skip-sam-compile", action="store_true", help="do not compile segment_anything (saves ~1 min)")
    parser.add_argument("--compile-wait", type=float, default=240, help="seconds to wait for our background compile")
    parser.add_argument("--precision", default="auto", help="the server's precision setting (default auto: measured)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here (use --device cpu --arch tiny for a smoke run)")
    report = Report()
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# GPU check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, model {args.arch} (random weights)")

    report.section(f"matmul peak at {args.matmul_size}² (the hardware's limit for one 1024² ViT-B embedding, {ENCODER_GFLOP:.0f} GFLOP)")
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32} if device.type == "cuda" else {"fp32": torch.float32}
    for label, dtype in dtypes.items():
        def peak(label=label, dtype=dtype) -> None:
            tflops = matmul_tflops(device, dtype, args.matmul_size, min(args.repeats, 5))
            report.row(f"matmul {label}", f"{tflops:.1f} TFLOP/s" if tflops >= 1 else f"{1000 * tflops:.1f} GFLOP/s",
                       f"⇒ {ENCODER_GFLOP / tflops:.2f} ms per embedding, {tflops * 1000 / ENCODER_GFLOP:.0f} slices/s")
        report.attempt(f"matmul {label}", peak)

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        checkpoint = write_random_checkpoint(scratch / "sam.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM, seed=0)
        image = np.repeat(np.kron(probe_slice(256)[:, :, 0], np.ones((4, 4), dtype=np.uint8))[:, :, None], 3, axis=2)

        # segment_anything as a user runs it: its own modules, untouched.
        report.section("segment_anything as a user runs it (encoder on a preprocessed 1024² input)")
        sam = load_sam(checkpoint)[0].eval().to(device)
        reference = PromptPredictor(copy.deepcopy(sam), device, "fp32")  # fp32 masks to compare against
        reference_masks = probe_masks(reference, reference.encode(image))
        sam_rows: Dict[str, float] = {}

        def sam_encoder(label: str, encoder, batch: int, dtype: Optional[torch.dtype]) -> None:
            x = sam_input(sam, [image] * batch, device)

            @torch.inference_mode()
            def run():
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    encoder(x)

            seconds = timed(run, device, args.repeats) / batch
            sam_rows[label] = seconds
            report.row(label, ms(seconds) + "/slice", f"{1 / seconds:.0f} slices/s")

        half = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
        report.attempt("sam fp32, 1 slice", lambda: sam_encoder("sam fp32, 1 slice", sam.image_encoder, 1, None))
        report.attempt("sam bf16 autocast, 1 slice", lambda: sam_encoder("sam bf16 autocast, 1 slice", sam.image_encoder, 1, half))
        report.attempt("sam bf16 autocast, batch 32", lambda: sam_encoder(
            "sam bf16 autocast, batch 32", sam.image_encoder, 32 if device.type == "cuda" else 2, half))
        if not (args.no_compile or args.skip_sam_compile):
            def sam_compiled() -> None:
                compiled = torch.compile(copy.deepcopy(sam.image_encoder))
                began = time.perf_counter()
                sam_encoder("sam bf16 compiled, 1 slice", compiled, 1, half)
                sam_encoder("sam bf16 compiled, batch 8", compiled, 8, half)
                report.row("sam compile + both measurements", f"{time.perf_counter() - began:.1f} s")
            report.attempt("sam bf16 compiled", sam_compiled)
        def sam_decoder() -> None:
            from segment_anything import SamPredictor

            user = SamPredictor(sam)
            user.set_image(image)
            point = (np.array([[500.0, 400.0]]), np.array([1]))
            seconds = timed(lambda: user.predict(*point, multimask_output=True), device, args.repeats * 3)
            report.row("sam decoder alone (SamPredictor.predict, 1 point)", ms(seconds))
        report.attempt("sam decoder", sam_decoder)
        sam = None  # its GPU memory back before ours loads (the rows above ran already)
        if device.type == "cuda":
            torch.cuda.empty_cache()

        # This project, configured as the server is by default.
        report.section("this project as the server runs it (settings defaults; from uint8 slices, preprocessing included)")
        conf = {"checkpoint": str(checkpoint), "download": "false", "device": str(device), "cache_dir": str(scratch / "cache"),
                "embedding_disk_dir": str(scratch / "embeddings"), "prefetch_radius": "0",
                "compile_encoder": "off" if args.no_compile else "auto", "precision": args.precision}
        settings = Settings.from_conf(conf)
        models = build_model_provider(settings)
        loading = time.perf_counter()
        predictor = models.predictor()
        status = models.status
        report.row("model load with its measurements", f"{time.perf_counter() - loading:.1f} s")
        report.row("precision", status["precision"], status["precision_choice"].get("reason", ""))
        report.row("attention bias form", str(status["attention"]["form"]), str(status["attention"].get("encoder_ms") or ""))
        report.row("encode batch", str(status["encode_batch"]["chosen"]), str(status["encode_batch"]["ms_per_slice"]))
        report.row("embeddings rounded to float16", str(status["embedding_storage"]["half"]),
                   str(status["embedding_storage"]["reason"]))
        ours: Dict[str, float] = {}

        def encode_rows(suffix: str) -> None:
            one = timed(lambda: predictor.encode(image), device, args.repeats)
            ours[f"1 slice{suffix}"] = one
            report.row(f"ours, 1 slice{suffix}", ms(one), f"{1 / one:.0f} slices/s")
            batch = predictor.encode_batch_size
            many = timed(lambda: predictor.encode_batch([image] * batch), device, max(3, args.repeats // 2)) / batch
            ours[f"batch{suffix}"] = many
            report.row(f"ours, batch {batch}{suffix}", ms(many) + "/slice", f"{1 / many:.0f} slices/s")

        compilation = models.compilation
        if compilation is not None:  # waited for first, so the eager rows do not share the GPU with the compile
            def wait_compile() -> None:
                waited = time.perf_counter()
                compilation.wait(args.compile_wait)
                state = compilation.status
                report.row("our background compile", state.state, f"{state.reason}; {state.seconds} s; block ms eager "
                           f"{state.eager_ms}, compiled {state.compiled_ms} (waited {time.perf_counter() - waited:.1f} s)")
            report.attempt("our compile", wait_compile)

        def eager_rows() -> None:
            compiled = list(predictor.compiled_blocks)
            predictor.compiled_blocks.clear()  # the eager encoder for these rows, whatever the compile decided
            try:
                encode_rows(" (eager)")
            finally:
                predictor.compiled_blocks[:] = compiled
        report.attempt("ours eager", eager_rows)
        if predictor.compiled_blocks:
            report.attempt("ours compiled", lambda: encode_rows(" (compiled)"))

        def agreement() -> None:
            iou = mean_iou(probe_masks(reference, predictor.encode(image)), reference_masks)
            report.row("mask agreement with sam fp32 (mean IoU, probe)", f"{iou:.4f}", "target ≥ 0.98")
        report.attempt("agreement", agreement)

        ct = synthetic_ct(scratch / "ct.nii", args.slices, args.side)
        embedder = build_slice_embedder(settings, models)

        def precompute_row() -> None:
            summary = precompute([ct], embedder, progress=False)
            files = list((scratch / "embeddings").rglob("*.npz"))
            per_slice = sum(f.stat().st_size for f in files) / max(len(files), 1)
            report.row(f"precompute {args.slices}-slice CT ({args.side}²), written to disk", f"{summary.seconds:.2f} s",
                       f"{summary.encoded / summary.seconds:.0f} slices/s, {per_slice / 1e6:.2f} MB per slice on disk")
        report.attempt("precompute", precompute_row)

        def propagation_rows() -> None:
            cold_settings = Settings.from_conf(dict(conf, embedding_disk_dir="off"))
            segmenter = VolumeSegmenter(models, build_slice_embedder(cold_settings, models))
            prompts = answered_prompt(models, conf, ct, args.slices // 2, args.side)
            relaxed = PropagationSettings(iou_threshold=0.0, min_predicted_iou=0.0)  # random weights: walk every slice
            for run in ("cold", "warm"):
                began = time.perf_counter()
                outcome = segmenter.segment(ct, prompts, ClickContext("gpu-check", reset_state=True), settings=relaxed)
                synchronize(device)
                total = time.perf_counter() - began
                count = len(outcome.result.recomputed)
                report.row(f"propagation {run}, {count} slices", f"{count / total:.0f} slices/s",
                           f"encode {ms(outcome.latencies['encode'] / count)}/slice, decode "
                           f"{ms(outcome.latencies['decode'] / count)}/slice")
        report.attempt("propagation", propagation_rows)

        def click_rows() -> None:
            clicks_settings = Settings.from_conf(dict(conf, embedding_disk_dir="off"))
            segmenter = InteractiveSegmenter(models, embedder=build_slice_embedder(clicks_settings, models))
            rng = np.random.default_rng(0)

            def click(k: int, reset: bool) -> float:
                point = [int(rng.integers(args.side // 4, 3 * args.side // 4)), int(rng.integers(args.side // 4, 3 * args.side // 4)), k]
                began = time.perf_counter()
                segmenter.segment(ct, PromptFields.read({"foreground": [point]}).prompts(), ClickContext("ct", reset_state=reset))
                synchronize(device)
                return time.perf_counter() - began

            click(0, True)  # the volume read once, kernels warmed
            cold = [click(k, True) for k in range(1, 6)]  # each on a slice never embedded
            warm = [click(3, n % 5 == 0) for n in range(30)]
            report.row("cold click (core: encode + decode, new slice), median of 5", ms(statistics.median(cold)), "target ≤ 12 ms")
            report.row("warm click (core), p50 of 30", ms(statistics.median(warm)),
                       f"p95 {ms(sorted(warm)[int(0.95 * (len(warm) - 1))])}; target ≤ 5 ms")
            embedding = predictor.encode(image)
            point = (np.array([[500.0, 400.0]]), np.array([1]))
            report.row("our decoder alone (predict, 1 point)", ms(timed(lambda: predictor.predict(embedding, *point), device,
                                                                          args.repeats * 3)))
        report.attempt("clicks", click_rows)

        if device.type == "cuda":
            report.attempt("decoder as a CUDA graph", lambda: cuda_graph_decoder(report, predictor, image, args.repeats))

        def semantic_row() -> None:
            shape = DecoderShape(num_classes=3) if args.arch == "vit_b" else DecoderShape(num_classes=3, initial_features=4)
            decoder = UNETRDecoder(shape).to(device).eval()
            features = torch.randn(4, 256, 64, 64, device=device)

            @torch.inference_mode()
            def infer():
                logits_to_slice(decoder(features), (1024, 1024), (args.side, args.side)).argmax(1)

            report.row(f"semantic decoder ({shape.initial_features} features, batch 4, argmax at the slice size)", ms(timed(infer, device, args.repeats) / 4) + "/slice")
        report.attempt("semantic", semantic_row)

    report.section("summary")
    report.row("total time of this check", f"{time.perf_counter() - started:.0f} s")
    if report.failures:
        report.row("rows that failed", str(len(report.failures)), ", ".join(report.failures))


def answered_prompt(models, conf: Dict[str, str], ct: Path, middle: int, side: int):
    """A box or click on the middle slice that the model answers with a mask (random weights answer some prompts
    with nothing), found with embeddings of its own, so the propagation timed after it still starts cold."""
    finder = InteractiveSegmenter(models, embedder=build_slice_embedder(Settings.from_conf(dict(conf, embedding_disk_dir="off")), models))
    boxes = [{"roi": [int(side * a), int(side * b), int(side * c), int(side * d), middle, middle]}  # flat: one slice thick
             for a, b, c, d in ((0.2, 0.5, 0.3, 0.6), (0.1, 0.9, 0.1, 0.9), (0.4, 0.8, 0.4, 0.8))]
    points = [{"foreground": [[int(side * x), int(side * y), middle]]} for y in (0.45, 0.3, 0.6) for x in (0.33, 0.5, 0.66)]
    candidates = boxes + points
    for candidate in candidates:
        prompts = PromptFields.read(candidate).prompts()
        if finder.segment(ct, prompts, ClickContext("ct")).label.any():
            return prompts
    raise RuntimeError(f"the model answers none of {len(candidates)} prompts on slice {middle} with a mask")


def cuda_graph_decoder(report: Report, predictor: PromptPredictor, image: np.ndarray, repeats: int) -> None:
    """The click's decoder as the server runs it on a GPU (model/decoder_graphs.py: a CUDA graph per prompt shape,
    adopted if faster with the same answer): each shape's decision so far, and one point timed eager and replayed."""
    from medicosam_app.model.decoder_graphs import DecoderGraphs

    graphs = DecoderGraphs(predictor.sam, predictor.dense_pe)
    embedding = predictor.encode(image)
    features = embedding.features.to(predictor.device)
    frame = predictor.frame(image.shape[:2])
    coords = torch.as_tensor(frame.points(np.array([[500.0, 400.0]])), dtype=torch.float, device=predictor.device)[None]
    labels = torch.ones((1, 1), dtype=torch.int, device=predictor.device)
    eager = timed(lambda: graphs.eager(features, coords, labels, None, None, True), predictor.device, repeats * 3)
    graphs.decode(features, coords, labels, None, None, True)  # captures and decides
    replayed = timed(lambda: graphs.decode(features, coords, labels, None, None, True), predictor.device, repeats * 3)
    decision = graphs.status()["1p/3"]
    report.row("decoder (prompt encoder + mask decoder, 1 point), eager", ms(eager))
    report.row("decoder through DecoderGraphs (1 point)", ms(replayed), f"{decision['state']}: {decision['reason']}")
    served = predictor.decoder_graphs.status() if predictor.decoder_graphs is not None else "off"
    report.row("the server's decoder graphs after the clicks", "", str(served)[:200])


if __name__ == "__main__":
    main()
