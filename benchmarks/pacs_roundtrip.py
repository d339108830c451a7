"""The PACS path, timed: Orthanc → our server → click → DICOM SEG back to Orthanc.

    python benchmarks/pacs_roundtrip.py [--arch tiny|vit_b] [--series ct|mr] [--clicks 10]

Starts Orthanc (scripts/start_orthanc.sh) and our server on 127.0.0.1 with random weights of the chosen
shape, uploads the sample study, then measures as the OHIF extension calls the server:
1. first click on a series the server has never seen (QIDO + WADO download, series check, NIfTI conversion,
   slice encoding, decoding);
2. warm clicks on the same slice (points only, raw NRRD);
3. saving a final label (label check, local atomic copy, SEG encoding with highdicom, STOW-RS);
4. a fresh server reading the SEG back (`GET /datastore/?output=train`).
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "sample-data")]

import numpy as np  # noqa: E402
import requests  # noqa: E402
import SimpleITK as sitk  # noqa: E402

import build_dicom  # noqa: E402

from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint  # noqa: E402
from server.harness import running_server, slicer_client, wait_for_model  # noqa: E402
from server.orthanc import running_orthanc, upload  # noqa: E402

OHIF = {"background": [], "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False}
SERIES = {"ct": ("phantom_ct", "Phantom CT"), "mr": ("mni_mr", "MNI152 T1")}


def click(url: str, series_uid: str, voxel) -> float:
    started = time.perf_counter()
    response = requests.post(
        f"{url}/infer/medicosam_interactive", params={"image": series_uid, "output": "image"},
        files={"params": (None, json.dumps(dict(OHIF, foreground=[list(voxel)])))}, timeout=600,
    )
    response.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["tiny", "vit_b"], default="tiny")
    parser.add_argument("--series", choices=sorted(SERIES), default="ct")
    parser.add_argument("--clicks", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pacs_bench_") as tmp:
        root = Path(tmp)
        checkpoint = write_random_checkpoint(root / "sam.pt", VIT_B_SAM if args.arch == "vit_b" else TINY_SAM, seed=1)
        dicom = build_dicom.build(root / "dicom")
        folder, description = SERIES[args.series]
        env = {"MEDICOSAM_CHECKPOINT": str(checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
               "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
        with running_orthanc(root / "orthanc") as pacs:
            started = time.perf_counter()
            upload(pacs, dicom)
            uploaded = time.perf_counter() - started
            instances = sum(1 for _ in dicom.rglob("*.dcm"))
            series = next(s for s in requests.get(f"{pacs}/series", timeout=30).json()
                          if s.get("0008103E", {}).get("Value", [""])[0] == description)
            uid = series["0020000E"]["Value"][0]
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dicom / folder))
            reference = sitk.ReadImage(files)  # the series as GDCM orders it: the server's geometry
            columns, rows, slices = reference.GetSize()
            k = slices // 2
            voxel = (columns // 2, rows // 2, k)

            with running_server(pacs, root / "server.log", env=env) as url:
                wait_for_model(url, timeout=600)
                first = click(url, uid, voxel)
                warm = [click(url, uid, voxel) for _ in range(args.clicks)]

                label = np.zeros((slices, rows, columns), dtype=np.uint8)
                label[k - 3:k + 3, rows // 3:rows // 2, columns // 3:columns // 2] = 1
                image = sitk.GetImageFromArray(label)
                image.CopyInformation(reference)
                sitk.WriteImage(image, str(root / "label.nii.gz"))
                client = slicer_client(url, root / "client")
                started = time.perf_counter()
                client.save_label(uid, str(root / "label.nii.gz"), tag="final",
                                  params={"label_info": [{"name": "structure", "idx": 1}]})
                saved = time.perf_counter() - started

            with running_server(pacs, root / "fresh.log", env=dict(env, MEDICOSAM_CACHE_DIR=str(root / "fresh"))) as url:
                started = time.perf_counter()
                datalist = requests.get(f"{url}/datastore/", params={"output": "train"}, timeout=600).json()
                read_back = time.perf_counter() - started

        print(f"series: {description}, {slices} slices of {columns}x{rows}; model: {args.arch} (random weights)")
        print(f"upload (STOW) of the sample study: {instances} instances in {uploaded:.2f} s")
        print(f"first click on an unseen series (download + check + convert + encode + decode): {first * 1000:.0f} ms")
        print(f"warm click: p50 {statistics.median(warm) * 1000:.1f} ms, max {max(warm) * 1000:.1f} ms (n={len(warm)})")
        print(f"save final label → DICOM SEG → STOW: {saved * 1000:.0f} ms")
        print(f"fresh server: datalist with the SEG read back from the PACS: {read_back * 1000:.0f} ms "
              f"({len(datalist)} labelled series)")


if __name__ == "__main__":
    main()
