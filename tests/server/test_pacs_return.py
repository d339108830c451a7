"""A label saved while the PACS is away is kept on the server, said to be, and sent to the PACS by itself when
the PACS comes back (Orthanc stopped and started again on the same port and storage, by the project's script)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient

import build_dicom
from conftest import gdcm_series_image

from .harness import REPO, free_port, running_process, running_server, wait_for_model
from .test_health_server import pacs_stopped

pytestmark = pytest.mark.server


def orthanc(port: int, storage: Path, log: Path):
    command = [str(REPO / "scripts" / "start_orthanc.sh"), "--port", str(port), "--storage", str(storage)]
    return running_process("Orthanc", command, log, f"http://127.0.0.1:{port}/dicom-web/studies", timeout=60)


def label_bytes(label: np.ndarray, reference: sitk.Image, folder: Path) -> bytes:
    image = sitk.GetImageFromArray(label.transpose(2, 1, 0))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(folder / "label.nii.gz"))
    return (folder / "label.nii.gz").read_bytes()


def newest_seg_pixels(pacs: str, folder: Path) -> np.ndarray:
    """The newest SEG in the PACS, decoded by highdicom against the CT's instances, indexed [i, j, k]."""
    client = DICOMwebClient(pacs)
    segs = [client.retrieve_series(str(pydicom.Dataset.from_json(s).StudyInstanceUID),
                                   str(pydicom.Dataset.from_json(s).SeriesInstanceUID))[0]
            for s in client.search_for_series(search_filters={"Modality": "SEG"})]
    newest = max(segs, key=lambda seg: (str(seg.ContentDate), str(seg.ContentTime)))
    buffer = io.BytesIO()
    newest.save_as(buffer)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    sop_uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    parsed = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    return parsed.get_pixels_by_source_instance(sop_uids, combine_segments=True,
                                                assert_missing_frames_are_empty=True).transpose(2, 1, 0)


def test_a_label_saved_while_the_pacs_is_away_reaches_it_when_it_returns(tmp_path, tiny_checkpoint):
    dicom = build_dicom.build(tmp_path / "dicom")
    ct = str(pydicom.dcmread(str(next((dicom / "phantom_ct").glob("*.dcm"))), stop_before_pixels=True).SeriesInstanceUID)
    reference = gdcm_series_image(dicom / "phantom_ct")
    first = np.zeros(reference.GetSize(), np.uint8)
    first[20:60, 25:50, 10:30] = 1
    second = np.zeros(reference.GetSize(), np.uint8)
    second[70:80, 60:90, 5:12] = 1  # elsewhere: the older SEG cannot pass for it
    port, storage = free_port(), tmp_path / "orthanc"
    pacs = f"http://127.0.0.1:{port}/dicom-web"
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_PACS_RETRY_S": "1"}

    def save(label: np.ndarray) -> requests.Response:
        return requests.put(f"{url}/datastore/label", params={"image": ct, "tag": "final"},
                            data={"params": json.dumps({"label_info": [{"name": "liver", "idx": 1}]})},
                            files={"label": ("label.nii.gz", label_bytes(label, reference, tmp_path))}, timeout=120)

    def served_label() -> np.ndarray:
        answer = requests.get(f"{url}/datastore/label", params={"label": ct, "tag": "final"}, timeout=120)
        assert answer.status_code == 200, answer.text
        (tmp_path / "served.nii.gz").write_bytes(answer.content)
        return sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "served.nii.gz"))).transpose(2, 1, 0)

    from .orthanc import upload

    with orthanc(port, storage, tmp_path / "orthanc-1.log") as first_orthanc:
        upload(pacs, dicom)
        with running_server(pacs, tmp_path / "server.log", env=env, ready_path="/healthz") as url:
            wait_for_model(url)
            assert save(first).status_code == 200
            pacs_stopped(pacs)
            away = save(second)
            # 503 + Retry-After when the PACS does not answer; 502 when it answers with an error while it shuts
            # down (which of the two depends on how far Orthanc got). Either way the label is kept and resent.
            assert away.status_code in (502, 503), away.text
            assert away.status_code == 502 or away.headers["retry-after"] == "30"
            assert "saved on this server, not lost" in away.json()["detail"]
            assert "sends it to the PACS when the PACS answers again" in away.json()["detail"]
            assert np.array_equal(served_label(), second)  # the server serves what it kept
            first_orthanc.wait(timeout=60)  # it stops answering before it lets go of its database
            with orthanc(port, storage, tmp_path / "orthanc-2.log"):
                deadline = time.monotonic() + 60
                while len(DICOMwebClient(pacs).search_for_series(search_filters={"Modality": "SEG"})) < 2:
                    assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
                    time.sleep(0.5)
                assert np.array_equal(newest_seg_pixels(pacs, dicom / "phantom_ct"), second)
                assert np.array_equal(served_label(), second)
                info = requests.get(f"{url}/datastore/label/info", params={"label": ct, "tag": "final"}, timeout=30)
                assert info.json().get("pacs_pending") is None
            assert "is now in the PACS" in (tmp_path / "server.log").read_text()
