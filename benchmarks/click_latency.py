"""Click latency through the real server, as 3D Slicer clicks, against MONAI Label's own SAM2 task.

    python benchmarks/click_latency.py [--arch vit_b|tiny] [--clicks 30] [--device cpu|cuda] [--skip-sam2]

1. Bare encoder and decoder, in this process, on the clicked slice (same preprocessing as the server).
2. Our server on 127.0.0.1 (random weights in the chosen shape): one click elsewhere to warm the process,
   then a cold click on a new slice, /info polled while another new slice is encoded, and warm clicks
   (a point added each time, as an annotator refines) through the Slicer module's client.
3. segment_anything's own SamPredictor.set_image on the same slice, fp32 and bf16 autocast: the cold-click
   target is 0.8 × the faster of the two, measured in this run.
4. MONAI Label's SAM2 2D task (random SAM2.1 hiera-tiny, its smallest model) on the same image, same clicks.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import requests  # noqa: E402
import torch  # noqa: E402

from medicosam_app.geometry.coordinates import SliceView  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from medicosam_app.services import build_model_provider, build_slice_embedder  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402
from medicosam_app.geometry.volume import read_volume  # noqa: E402
from server.harness import running_server, slicer_client, wait_for_model  # noqa: E402

SLICER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}
DEFAULT_IMAGE = REPO / "sample-data" / "datastore" / "mni152_t1.nii.gz"


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bare_timings(checkpoint: Path, image: Path, k: int, point_xy, device, precision: str) -> Dict[str, float]:
    """Encoder and decoder alone, after one warm-up, with the server's default settings."""
    conf = {"checkpoint": str(checkpoint), "download": "false", "embedding_disk_dir": "off", "precision": precision}
    settings = Settings.from_conf({**conf, **({"device": device} if device else {})})
    models = build_model_provider(settings)
    embedder = build_slice_embedder(settings, models)
    volume = read_volume(image)
    view = SliceView.create(volume.shape, volume.direction, 2)
    predictor = models.predictor()
    embedder.encode(volume, view, [k])  # warm-up
    encode_times, embedding = [], None
    for _ in range(3):
        started = time.perf_counter()
        embedding = embedder.encode(volume, view, [k])[0]
        encode_times.append(time.perf_counter() - started)
    points, labels = np.array([point_xy], dtype=float), np.array([1])
    decode_times = [timed(lambda: predictor.predict(embedding, points, labels)) for _ in range(10)]
    return {"encode": statistics.median(encode_times), "decode": statistics.median(decode_times), "precision": predictor.precision}


def segment_anything_encoder(checkpoint: Path, image: Path, k: int, device) -> Dict[str, float]:
    """segment_anything's SamPredictor.set_image (its transform, normalisation and encoder, unmodified) on the
    clicked slice, in fp32 and under bf16 autocast; median of 2 after a warm-up (just the warm-up for a
    precision over 3× slower than fp32, and none on a CPU whose bf16 matmul is emulated: clearly not the faster)."""
    from segment_anything import SamPredictor

    from medicosam_app.embeddings.intensity import slice_to_rgb
    from medicosam_app.model.sam_builder import load_sam

    sam, _ = load_sam(checkpoint)  # no fused attention, no layout changes: the library as released
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    predictor = SamPredictor(sam.to(device))
    volume = read_volume(image)
    view = SliceView.create(volume.shape, volume.direction, 2)
    intensity = Settings.from_conf({}).intensity  # the server's default intensity policy: the same pixels
    rgb = slice_to_rgb(view.extract(volume.array, k), intensity.volume_range(volume.array))
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    seconds: Dict[str, float] = {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        if dtype is not None and device.type == "cpu" and _matmul_ratio(dtype) < 0.05:
            # bf16 emulated (no bf16 units): one pass takes minutes and cannot be the faster one.
            print(f"[segment_anything] {precision} skipped: its matmul runs at under 5 % of fp32's here", flush=True)
            continue

        def once() -> None:
            if dtype is None:
                predictor.set_image(rgb)
            else:
                with torch.autocast(device_type=device.type, dtype=dtype):
                    predictor.set_image(rgb)
            sync()

        first = timed(once)
        if seconds and first > 3 * min(seconds.values()):
            seconds[precision] = first
            continue
        seconds[precision] = statistics.median(timed(once) for _ in range(2))
    return seconds


def _matmul_ratio(dtype: torch.dtype, size: int = 512) -> float:
    """Speed of a ``dtype`` matmul relative to fp32 on this CPU (a small one: emulated bf16 is very slow)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    rates = []
    for kind in (torch.float32, dtype):
        x, y = a.to(kind), b.to(kind)
        x @ y
        rates.append(1 / min(timed(lambda: x @ y) for _ in range(3)))
    return rates[1] / rates[0]


def info_latencies_during(url: str, work: Callable[[], object]) -> List[float]:
    """/info round trips measured while ``work`` runs in another thread."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: (work(), done.set()))
    thread.start()
    latencies = []
    while not done.is_set():
        latencies.append(timed(lambda: requests.get(f"{url}/info/", timeout=60).raise_for_status()))
        time.sleep(0.02)
    thread.join()
    return latencies


def click_series(click: Callable[[dict], tuple], points: List[List[int]], k: int, server_side: list = None) -> List[float]:
    """Warm clicks: each adds one point on slice k, as an annotator refines a mask."""
    times = []
    for count in range(1, len(points) + 1):
        params = {"foreground": points[:count], "background": [], "slice": k, "label": "bench", **SLICER_PARAMS}
        started = time.perf_counter()
        _, answer = click(params)
        times.append(time.perf_counter() - started)
        if server_side is not None:
            server_side.append(answer.get("latencies", {}))
    return times


def ours(args, folder: Path, studies: Path, image_id: str, shape, k: int, points) -> Dict[str, object]:
    checkpoint = write_random_checkpoint(folder / "medicosam_random.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
    view_point = points[0]
    volume = read_volume(studies / f"{image_id}.nii.gz")
    view = SliceView.create(volume.shape, volume.direction, 2)
    point_xy = view.voxel_to_xy(view_point)
    print(f"[ours] bare encoder/decoder in-process ({args.arch}) ...", flush=True)
    bare = bare_timings(checkpoint, studies / f"{image_id}.nii.gz", k, point_xy, args.device, args.precision)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None

    # The same precision as the bare run: with "auto" the server reads the choice the bare run remembered in
    # the shared cache folder (the test harness would otherwise force fp32).
    env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_PREFETCH_RADIUS": str(args.prefetch_radius),
           "MEDICOSAM_PRECISION": args.precision}
    if args.device:
        env["MEDICOSAM_DEVICE"] = args.device
    print("[ours] starting the server ...", flush=True)
    with running_server(studies, folder / "ours.log", env=env) as url:
        status = wait_for_model(url, timeout=600)
        assert status["available"], status
        client = slicer_client(url, folder / "client-ours", client_id="bench")
        click = lambda params: client.infer("medicosam_interactive", image_id, params)  # noqa: E731
        far = lambda offset: min(shape[2] - 1, (k + offset) % shape[2])  # noqa: E731

        click({"foreground": [[points[0][0], points[0][1], far(60)]], "slice": far(60), **SLICER_PARAMS})  # warm the process
        print("[ours] 3 cold clicks ...", flush=True)
        colds, cold_server_side = [], []
        for index in (far(-60), far(-30), k):  # never-encoded slices, out of the prefetch's reach
            cold_params = {"foreground": [[points[0][0], points[0][1], index]], "slice": index, "label": "bench", "reset_state": True, **SLICER_PARAMS}
            started = time.perf_counter()
            _, answer = click(cold_params)
            colds.append(time.perf_counter() - started)
            cold_server_side.append(answer.get("latencies", {}))
        cold = statistics.median(colds)
        print("[ours] /info while a new slice is encoded ...", flush=True)
        other = far(40)
        info = info_latencies_during(url, lambda: click({"foreground": [[points[0][0], points[0][1], other]], "slice": other, **SLICER_PARAMS}))
        print(f"[ours] {args.clicks} warm clicks ...", flush=True)
        server_side: list = []
        warm = click_series(click, points, k, server_side)
        interactive_info = requests.get(f"{url}/info/", timeout=10).json()["models"]["medicosam_interactive"]
        model_status = interactive_info["model_status"]
    phases = server_phases(server_side)
    return {"checkpoint": checkpoint, "cold_phases": server_phases(cold_server_side), "bare": bare, "cold": cold, "colds": colds, "info": info, "warm": warm, "device": model_status["device"],
            "precision": model_status["precision"], "malloc": interactive_info.get("malloc_tuning"), "phases": phases}


def server_phases(answers: List[dict]) -> Dict[str, float]:
    """Median of each latency field the server reports (ms), over the answers that carry it."""
    keys = [key for key in answers[0] if isinstance(answers[0][key], (int, float)) and not isinstance(answers[0][key], bool)] if answers else []
    return {key: statistics.median(entry[key] for entry in answers if key in entry) for key in keys}


def sam2_baseline(args, folder: Path, studies: Path, image_id: str, k: int, points) -> Dict[str, object]:
    from sam2.build_sam import build_sam2

    model_dir = folder / "sam2_model"
    model_dir.mkdir()
    sam2 = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")
    torch.save({"model": sam2.state_dict()}, model_dir / "sam2.1_hiera_tiny.pt")
    import sam2 as sam2_package

    shutil.copy(Path(sam2_package.__file__).parent / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml", model_dir)
    env = {
        "SAM2_BASELINE_MODEL_DIR": str(model_dir),
        "MONAI_SAM_MODEL_PT": f"file://{model_dir}/sam2.1_hiera_tiny.pt",
        "MONAI_SAM_MODEL_CFG": f"file://{model_dir}/sam2.1_hiera_t.yaml",
        "MONAI_LABEL_DATASTORE_CACHE_PATH": str(folder / "sam2_cache"),
    }
    print("[sam2] starting MONAI Label with its SAM2 task ...", flush=True)
    with running_server(studies, folder / "sam2.log", env=env, app=REPO / "benchmarks" / "sam2_baseline_app") as url:
        client = slicer_client(url, folder / "client-sam2", client_id="bench")
        device = {"device": args.device or ("cuda" if torch.cuda.is_available() else "cpu")}
        click = lambda params: client.infer("sam_2d", image_id, {**params, **device})  # noqa: E731
        click({"foreground": [points[0]], "slice": k, **SLICER_PARAMS})  # warm (model build, image load)
        print(f"[sam2] {args.clicks} warm clicks ...", flush=True)
        warm = click_series(click, points, k)
    return {"warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["vit_b", "tiny"], default="vit_b")
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a 3D image (default: MNI152 T1 sample)")
    parser.add_argument("--skip-sam2", action="store_true")
    parser.add_argument("--skip-segment-anything", action="store_true", help="do not time segment_anything's encoder")
    parser.add_argument("--precision", default="auto", help="server setting for both runs (default: auto)")
    parser.add_argument("--prefetch-radius", type=int, default=16, help="server setting (0: no background encoding)")
    args = parser.parse_args()
    if not args.image.exists():
        sys.exit(f"{args.image} is missing: run  python sample-data/build_datastore.py  first")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["MEDICOSAM_CACHE_DIR"] = str(folder / "cache")  # a fresh disk cache: no earlier embeddings
        studies = folder / "studies"
        studies.mkdir()
        image_id = "study"
        shutil.copy(args.image, studies / f"{image_id}.nii.gz")
        shape = read_volume(studies / f"{image_id}.nii.gz").shape
        k = shape[2] // 2
        # Points spread over the middle of the slice: deterministic, inside the image.
        points = [[shape[0] // 2 + (n % 5 - 2) * shape[0] // 20, shape[1] // 2 + (n // 5 % 5 - 2) * shape[1] // 20, k]
                  for n in range(args.clicks)]

        result = ours(args, folder, studies, image_id, shape, k, points)
        if not args.skip_segment_anything:
            print("[segment_anything] SamPredictor.set_image, fp32 and bf16 autocast ...", flush=True)
            result["segment_anything"] = segment_anything_encoder(result["checkpoint"], studies / f"{image_id}.nii.gz", k, args.device)
        baseline = None if args.skip_sam2 else sam2_baseline(args, folder, studies, image_id, k, points)

    bare, warm = result["bare"], result["warm"]
    bare_total = bare["encode"] + bare["decode"]
    print()
    print(f"image {args.image.name} {shape}, slice {k}, model {args.arch} (random weights), device {result['device']}, "
          f"precision {bare['precision']} (server: {result['precision']}), {torch.get_num_threads()} CPU threads, "
          f"prefetch radius {args.prefetch_radius}")
    print(f"server malloc tuning: {result['malloc']}")
    print(f"bare encoder (median of 3):   {bare['encode'] * 1000:9.1f} ms")
    print(f"bare decoder:                 {bare['decode'] * 1000:9.1f} ms")
    print(f"cold click (median of 3):     {result['cold'] * 1000:9.1f} ms = {result['cold'] / bare_total:.2f} x (encoder + decoder)"
          f"   [{', '.join(f'{c * 1000:.0f}' for c in result['colds'])} ms]")
    print("  server-side medians: " + ", ".join(f"{key} {value * 1000:.1f} ms" for key, value in result["cold_phases"].items()))
    if "segment_anything" in result:
        stock = result["segment_anything"]
        faster = min(stock.values())
        timings = ", ".join(f"{name} {value * 1000:.1f} ms" for name, value in stock.items())
        print(f"segment_anything set_image:   {timings}  ⇒ cold click = {result['cold'] / faster:.2f} × the faster"
              f" (target ≤ 0.8)")
    print(f"/info while encoding:  p50 {percentile(result['info'], 50) * 1000:7.1f} ms  p95 {percentile(result['info'], 95) * 1000:7.1f} ms  (n={len(result['info'])})")
    print(f"warm click (round trip): p50 {percentile(warm, 50) * 1000:7.1f} ms  p95 {percentile(warm, 95) * 1000:7.1f} ms  (n={len(warm)})")
    print("  server-side medians: " + ", ".join(f"{key} {value * 1000:.1f} ms" for key, value in result["phases"].items()))
    if baseline:
        theirs = baseline["warm"]
        print(f"MONAI Label sam2 (hiera-t):  p50 {percentile(theirs, 50) * 1000:7.1f} ms  p95 {percentile(theirs, 95) * 1000:7.1f} ms  (n={len(theirs)})")
        print(f"per warm click, ours is {statistics.median(theirs) / statistics.median(warm):.1f} x faster (median vs median)")


if __name__ == "__main__":
    main()
