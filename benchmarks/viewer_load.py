"""The browser viewer, timed and weighed: our OHIF 3.13 with the MedicoSAM extension against MONAI Label's bundled
OHIF (``--conf viewer monailabel``), each served by our server in front of a real Orthanc, in headless Chromium.

    python benchmarks/viewer_load.py [--arch tiny|vit_b] [--boxes 5]

For each viewer, in a fresh browser (empty cache): the bytes downloaded for the viewer's own files (/ohif/...,
as sent on the wire, gzip where the server compresses) and for everything, and the seconds from navigation to
the first image. For ours also: a box dragged on the CT, cold (first prompt on the series: the server downloads
it from the PACS and encodes the slice) and warm (again on the same slice), from mouse release to the mask on
screen, split into the server's own time and the rest (network, NRRD, drawing). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "sample-data")]

import build_dicom  # noqa: E402

from browser.viewer_page import CHROMIUM, activate, drag_box, open_study, press, wait_for_answer, wait_for_console  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from server.harness import running_server, wait_for_model  # noqa: E402
from server.orthanc import running_orthanc, upload  # noqa: E402

ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def weigh(page, url: str, route: str) -> dict:
    """Load ``route`` in ``page`` with an empty cache; bytes on the wire and seconds to the first image."""
    sizes = []
    page.on("requestfinished", lambda request: sizes.append((request.url, request.sizes()["responseBodySize"])))
    page.console_lines = []
    page.on("console", lambda message: page.console_lines.append(message.text))
    started = time.perf_counter()
    page.goto(f"{url}{route}")
    wait_for_console(page, "displaySetsToFirstImage", timeout_ms=120_000)
    first_image = time.perf_counter() - started
    page.wait_for_timeout(3000)  # let the rest of the first load finish
    viewer = sum(size for address, size in sizes if "/ohif/" in address)
    return {"viewer_bytes": viewer, "all_bytes": sum(size for _, size in sizes), "first_image_s": first_image}


def boxes(page, url: str, study: str, count: int, args_arch: str) -> dict:
    open_study(page, url, study)
    frame = activate(page, page.locator("[data-viewport-uid='default']"))
    press(page, "box")
    times, server = [], []
    for n in range(count + 1):
        left, top = ((0.30, 0.45), (0.45, 0.60))[n % 2]  # never starting on the last box (that would move it)
        released = drag_box(page, frame, left, top, 70, 45)
        wait_for_answer(page, n + 1, timeout_ms=120_000 if args_arch == 'tiny' else 600_000)
        times.append(time.perf_counter() - released)
        server.append(page.evaluate("() => window.medicosam.lastAnswer.answer.latencies.total"))
    return {"cold_s": times[0], "cold_server_s": server[0], "warm_p50_s": statistics.median(times[1:]),
            "warm_server_p50_s": statistics.median(server[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["tiny", "vit_b"], default="tiny")
    parser.add_argument("--boxes", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="viewer_bench_") as tmp:
        root = Path(tmp)
        checkpoint = write_random_checkpoint(root / "sam.pt", TINY_SAM if args.arch == "tiny" else VIT_B_SAM, seed=1)
        dicom = build_dicom.build(root / "dicom")
        study = build_dicom.uid("study")
        results = {}
        with running_orthanc(root / "orthanc") as pacs, sync_playwright() as playwright:
            upload(pacs, dicom)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for viewer, route in (("medicosam", f"/ohif/segmentation?StudyInstanceUIDs={study}"),
                                  ("monailabel", f"/ohif/viewer?StudyInstanceUIDs={study}")):
                env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_VIEWER": viewer,
                       "MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
                with running_server(pacs, root / f"{viewer}.log", env=env) as url:
                    wait_for_model(url)
                    context = browser.new_context(viewport={"width": 1600, "height": 1000})
                    print(f"{viewer}: loading {route}", flush=True)
                    results[viewer] = weigh(context.new_page(), url, route)
                    print(f"{viewer}: {results[viewer]}", flush=True)
                    if viewer == "medicosam":
                        page = context.new_page()
                        page.console_lines = []
                        page.on("console", lambda message, page=page: page.console_lines.append(message.text))
                        try:
                            results[viewer].update(boxes(page, url, study, args.boxes, args.arch))
                        except AssertionError:
                            page.screenshot(path=str(REPO / "test-artifacts" / "viewer_load_failed.png"))
                            raise
                    context.close()
            browser.close()
    print(f"Viewer load and box prompt ({args.arch} weights, CPU server, headless Chromium with a software GPU)")
    for viewer, figures in results.items():
        line = (f"  {viewer:10s} viewer files {figures['viewer_bytes'] / 1e6:6.2f} MB on the wire, everything "
                f"{figures['all_bytes'] / 1e6:6.2f} MB, first image {figures['first_image_s']:.2f} s")
        print(line)
        if "warm_p50_s" in figures:
            print(f"  {'':10s} box → mask: cold {figures['cold_s']:.2f} s (server {figures['cold_server_s']:.2f} s), "
                  f"warm p50 {figures['warm_p50_s'] * 1000:.0f} ms (server {figures['warm_server_p50_s'] * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
