"""What an annotator sees when things go wrong: a PACS that stops and comes back, a client that hangs up.

    python benchmarks/service_faults.py [--arch tiny|vit_b]

PACS (Orthanc by scripts/start_orthanc.sh, the sample CT and MR): a series is opened and a label saved; Orthanc
is shut down; then timed: /readyz's first 503, the first answer for a series never opened (503), clicks on the
opened series, and a label save (kept on the server, 502). Orthanc is started again on the same storage; then
timed: /readyz back to 200 and the unseen series opening. The label is saved again and every acknowledged save
is looked for in the PACS. Targets (issue 27): first answer ≤ 5 s, cached clicks unaffected, recovery ≤ 10 s
after the PACS returns, 0 labels lost.

Client hung up: a 600-slice propagation whose client gives up after 3 s; printed: how long after the hang-up the
server logged that its work stopped (target ≤ 2 s). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "sample-data")]

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import requests  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from dicomweb_client import DICOMwebClient  # noqa: E402

import build_dicom  # noqa: E402
from conftest import gdcm_series_image, write_volume  # noqa: E402
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from server.harness import free_port, running_process, running_server, wait_for_model  # noqa: E402
from server.orthanc import rest_root, upload  # noqa: E402


def timed(call: Callable[[], requests.Response]) -> Tuple[float, requests.Response]:
    started = time.perf_counter()
    answer = call()
    return time.perf_counter() - started, answer


def until(condition: Callable[[], bool], limit_s: float = 60.0, every_s: float = 0.1) -> float:
    """Seconds until ``condition()`` holds (``inf`` if it never does within ``limit_s``)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        try:
            if condition():
                return time.perf_counter() - started
        except requests.RequestException:
            pass
        time.sleep(every_s)
    return float("inf")


def orthanc(port: int, storage: Path, log: Path):
    command = [str(REPO / "scripts" / "start_orthanc.sh"), "--port", str(port), "--storage", str(storage)]
    return running_process("Orthanc", command, log, f"http://127.0.0.1:{port}/dicom-web/studies", timeout=60)


def pacs_outage(root: Path, checkpoint: Path) -> None:
    dicom = build_dicom.build(root / "dicom")
    series = {name: str(pydicom.dcmread(str(next((dicom / name).glob("*.dcm"))), stop_before_pixels=True)
                        .SeriesInstanceUID) for name in ("phantom_ct", "mni_mr")}
    reference = gdcm_series_image(dicom / "phantom_ct")
    label = np.zeros(reference.GetSize(), np.uint8)
    label[20:60, 25:50, 10:30] = 1
    labelled = sitk.GetImageFromArray(label.transpose(2, 1, 0))
    labelled.CopyInformation(reference)
    sitk.WriteImage(labelled, str(root / "label.nii.gz"))
    port, storage = free_port(), root / "orthanc"
    pacs = f"http://127.0.0.1:{port}/dicom-web"
    env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}

    def click(url: str, image: str) -> requests.Response:
        return requests.post(f"{url}/infer/medicosam_interactive", params={"image": image, "output": "json"},
                             files={"params": (None, json.dumps({"foreground": [[60, 40, 20]], "client_id": "b"}))},
                             timeout=120)

    def save(url: str) -> requests.Response:
        return requests.put(f"{url}/datastore/label", params={"image": series["phantom_ct"], "tag": "final"},
                            data={"params": json.dumps({"label_info": [{"name": "liver", "idx": 1}]})},
                            files={"label": ("label.nii.gz", (root / "label.nii.gz").read_bytes())}, timeout=120)

    acknowledged = 0
    with orthanc(port, storage, root / "orthanc-1.log") as first_orthanc:
        upload(pacs, dicom)
        with running_server(pacs, root / "server.log", env=env, ready_path="/healthz") as url:
            wait_for_model(url, timeout=600)
            assert click(url, series["phantom_ct"]).status_code == 200
            acknowledged += save(url).status_code == 200
            warm = [timed(lambda: click(url, series["phantom_ct"]))[0] for _ in range(3)]
            requests.post(f"{rest_root(pacs)}/tools/shutdown", timeout=10)
            stopped = until(lambda: not _answers(pacs), 30)
            print(f"PACS stopped ({stopped:.1f} s to go quiet)")
            ready_s, ready = timed(lambda: requests.get(f"{url}/readyz", timeout=30))
            print(f"  /readyz: {ready.status_code} after {ready_s:.2f} s ({ready.json()['checks'].get('datastore')})")
            unseen_s, unseen = timed(lambda: click(url, series["mni_mr"]))
            print(f"  series never opened: {unseen.status_code} (Retry-After {unseen.headers.get('retry-after')}) "
                  f"after {unseen_s:.2f} s")
            cached = [timed(lambda: click(url, series["phantom_ct"])) for _ in range(3)]
            print(f"  clicks on the opened series: {[a.status_code for _, a in cached]}, "
                  f"{np.median([s for s, _ in cached]) * 1000:.0f} ms median (before the outage "
                  f"{np.median(warm) * 1000:.0f} ms)")
            during_s, during = timed(lambda: save(url))
            kept = requests.get(f"{url}/datastore/label", params={"label": series["phantom_ct"], "tag": "final"}, timeout=60)
            print(f"  label save: {during.status_code} after {during_s:.2f} s ({during.json().get('detail', '')[:90]}…); "
                  f"the label served back from the server: {kept.status_code}")
            first_orthanc.wait(timeout=60)  # it stops answering before it lets go of its database
            with orthanc(port, storage, root / "orthanc-2.log"):
                back = time.perf_counter()
                ready_again = until(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 200)
                until(lambda: click(url, series["mni_mr"]).status_code == 200)
                total = time.perf_counter() - back
                print(f"PACS back: /readyz 200 after {ready_again:.2f} s; the unseen series opened "
                      f"{total:.2f} s after the PACS answered (its download included)")
                acknowledged += save(url).status_code == 200
                segs = DICOMwebClient(pacs).search_for_series(search_filters={"Modality": "SEG"})
                print(f"  saves answered 200: {acknowledged}; SEGs in the PACS: {len(segs)}; "
                      f"labels lost: {max(0, acknowledged - len(segs))}")


def _answers(pacs: str) -> bool:
    try:
        return requests.get(f"{rest_root(pacs)}/system", timeout=1).ok
    except requests.RequestException:
        return False


def hung_up_client(root: Path, checkpoint: Path, slices: int = 600) -> None:
    studies = root / "studies"
    studies.mkdir()
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 1, (48, 40, slices)).astype(np.float32)
    volume[10:30, 8:28, :] += 5  # a tube through every slice: nothing but the client stops the walk
    write_volume(studies / "long.nii.gz", volume)
    log = root / "hangup.log"
    env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(studies, log, env=env) as url:
        wait_for_model(url, timeout=600)
        params = {"foreground": [[20, 18, slices // 2]], "iou_threshold": 0, "min_predicted_iou": 0, "client_id": "c"}
        try:
            requests.post(f"{url}/infer/medicosam_3d", params={"image": "long", "output": "json"},
                          files={"params": (None, json.dumps(params))}, timeout=3)
            print("client hung up: the walk answered within 3 s (make the volume longer)")
            return
        except requests.Timeout:
            hung_up = datetime.now()
        seen = until(lambda: "Work stopped" in log.read_text(errors="replace"), 60)
        match = re.search(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\][^\n]*Work stopped", log.read_text(errors="replace"))
        if not match:
            print("client hung up: no 'Work stopped' within 60 s")
            return
        logged = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        print(f"client hung up after 3 s of a {slices}-slice propagation: the server logged 'Work stopped' "
              f"{(logged - hung_up).total_seconds():.2f} s later (seen here after {seen:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "vit_b"], default="tiny")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.arch} random weights")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        checkpoint = write_random_checkpoint(root / "model.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM)
        (root / "pacs").mkdir()
        pacs_outage(root / "pacs", checkpoint)
        (root / "hangup").mkdir()
        hung_up_client(root / "hangup", checkpoint)


if __name__ == "__main__":
    main()
