"""The server against a real Orthanc over DICOMweb: listing, OHIF-style clicks, DICOM SEG round trip, bad series.

Everything goes through the real protocols: STOW to load Orthanc, MONAI Label's REST API as OHIF and Slicer
speak it, QIDO/WADO to look at what landed in the PACS.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient

import build_datastore
import build_dicom
from conftest import gdcm_series_image
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider

from .harness import running_server, slicer_client, wait_for_model
from .orthanc import running_orthanc, upload

pytestmark = pytest.mark.server

OHIF_PARAMS = {"background": [], "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False,
               "restore_label_idx": False}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Orthanc holding the sample CT and MR, a CT with a missing slice, one with uneven spacing, and a report."""
    root = tmp_path_factory.mktemp("pacs")
    build = build_dicom
    dicom = build.build(root / "dicom")
    phantom = build_datastore.make_ct_phantom()
    study = build.uid("broken-study")
    build.write_series(phantom, root / "broken" / "gap", "CT", "CT with a gap", study, 1, skip_slices=(10,))
    uneven = [2.5 * k + (0.9 if k >= 20 else 0.0) for k in range(phantom.GetSize()[2])]
    build.write_series(phantom, root / "broken" / "uneven", "CT", "CT uneven", study, 2, slice_positions=uneven)
    build.write_text_report(root / "broken" / "report", study)
    with running_orthanc(root / "orthanc") as url:
        upload(url, dicom, root / "broken")
        client = DICOMwebClient(url)
        uids = {
            str(pydicom.Dataset.from_json(s).get("SeriesDescription", "")): str(pydicom.Dataset.from_json(s).SeriesInstanceUID)
            for s in client.search_for_series()
        }
        yield url, uids, root


def serve_checkpoint_decoder_as_a_version(checkpoint, interactive_dir):
    """An interactive version holding the checkpoint's own decoder weights, promoted: the server then names
    an interactive version in what it writes (training itself is tested in test_finetune_server.py)."""
    from medicosam_app.model.checkpoints import file_xxh128
    from medicosam_app.finetune.decoder_weights import decoder_state
    from medicosam_app.model.sam_builder import load_sam
    from medicosam_app.learning.versions import VersionStore

    store = VersionStore(interactive_dir, what="interactive model")
    lock = store.acquire_training_lock()
    try:
        version = store.add(decoder_state(load_sam(checkpoint)[0]), {"encoder_checkpoint": file_xxh128(checkpoint)})
    finally:
        lock.release()
    store.promote(version, "test fixture")


@pytest.fixture(scope="module")
def server(pacs, phantom_checkpoint):
    url, _, root = pacs
    serve_checkpoint_decoder_as_a_version(phantom_checkpoint, root / "cache" / "interactive")
    env = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
    with running_server(url, root / "server.log", env=env) as server_url:
        assert wait_for_model(server_url)["available"], (root / "server.log").read_text()[-2000:]
        yield server_url


def test_start_up_uses_our_datastore_and_downloads_no_dcmqi(server, pacs):
    log = (pacs[2] / "server.log").read_text()
    assert "Using DICOMweb: http://127.0.0.1:" in log and "(modalities ALL)" in log
    assert "dcmqi" not in log.lower() and "github.com" not in log


def test_ct_and_mr_series_are_listed_and_the_report_is_not(server, pacs):
    _, uids, _ = pacs
    stats = requests.get(f"{server}/datastore/", params={"output": "stats"}, timeout=30).json()
    assert stats["total"] == 4  # phantom CT, MNI MR, the two broken CTs; not the SR
    first = requests.post(f"{server}/activelearning/first", json={}, timeout=60).json()
    assert first["id"] in {uids["Phantom CT"], uids["MNI152 T1"], uids["CT with a gap"], uids["CT uneven"]}
    info = requests.get(f"{server}/info/", timeout=10).json()
    assert {"medicosam_interactive", "medicosam_3d", "medicosam_semantic"} <= set(info["models"])


def test_ohif_points_only_request_answers_raw_nrrd_in_the_series_geometry(server, pacs, phantom_checkpoint, tmp_path):
    _, uids, root = pacs
    i, j, k = 64, 50, 20
    response = requests.post(
        f"{server}/infer/medicosam_interactive",
        params={"image": uids["Phantom CT"], "output": "image"},
        files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[i, j, k]])))},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"NRRD") and b"encoding: raw" in response.content[:1000]
    (tmp_path / "answer.nrrd").write_bytes(response.content)
    answer = sitk.ReadImage(str(tmp_path / "answer.nrrd"))
    label = sitk.GetArrayFromImage(answer).transpose(2, 1, 0)

    reference = gdcm_series_image(root / "dicom" / "phantom_ct")
    assert answer.GetSize() == reference.GetSize() == (128, 96, 40)
    assert np.allclose(answer.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert np.allclose(answer.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    assert np.allclose(answer.GetDirection(), reference.GetDirection())

    # The same click in-process on the series as GDCM reads it: voxel [i, j, k] is the same voxel.
    sitk.WriteImage(reference, str(tmp_path / "reference.nii.gz"))
    expected = InteractiveSegmenter(ModelProvider(str(phantom_checkpoint))).segment(
        tmp_path / "reference.nii.gz", requested({"foreground": [[i, j, k]]}), ClickContext("ohif")
    ).label
    assert expected.any() and not expected.all()
    assert np.array_equal(label, expected)
    assert set(np.argwhere(label)[:, 2]) == {k}


def _asymmetric_label(shape):
    label = np.zeros(shape, dtype=np.uint8)
    label[20:60, 25:50, 10:30] = 1  # patient-right half, anterior
    label[70:80, 60:90, 5:12] = 2
    label[90:95, 10:15, 33] = 2  # a single slice near the top
    return label


def test_final_label_becomes_a_dicom_seg_in_orthanc_and_comes_back_voxel_exact(server, pacs, tmp_path):
    url, uids, root = pacs
    ct = uids["Phantom CT"]
    reference = gdcm_series_image(root / "dicom" / "phantom_ct")
    label = _asymmetric_label(reference.GetSize())
    image = sitk.GetImageFromArray(label.transpose(2, 1, 0))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(tmp_path / "label.nii.gz"))

    client = slicer_client(server, tmp_path / "client")
    saved = client.save_label(ct, str(tmp_path / "label.nii.gz"), tag="final", params={
        "label_info": [{"name": "liver", "idx": 1}, {"name": "spine", "idx": 2}],
    })
    assert saved["image"] == ct

    pacs_client = DICOMwebClient(url)
    segs = pacs_client.search_for_series(search_filters={"Modality": "SEG"})
    assert len(segs) == 1
    seg_meta = pydicom.Dataset.from_json(segs[0])
    seg = pacs_client.retrieve_series(str(seg_meta.StudyInstanceUID), str(seg_meta.SeriesInstanceUID))[0]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "spine"]
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "MedicoSAM"
    assert algorithm.AlgorithmVersion.startswith("tiny_sam.pt xxh128:")
    assert algorithm.AlgorithmVersion.endswith("; interactive decoder v0001")
    assert "MedicoSAM" in seg.SeriesDescription and "tiny_sam.pt" in seg.SeriesDescription

    # Decoded independently with highdicom against the source instances in GDCM's slice order.
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(root / "dicom" / "phantom_ct"))
    sop_uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    parsed = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(_bytes(seg))))
    frames = parsed.get_pixels_by_source_instance(sop_uids, combine_segments=True,
                                                  assert_missing_frames_are_empty=True)
    assert np.array_equal(frames.transpose(2, 1, 0), label)


def _bytes(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def test_a_fresh_server_reads_the_seg_back_from_orthanc_voxel_exact(server, pacs, phantom_checkpoint, tmp_path):
    """After the save above, a second server with an empty cache finds the label only in Orthanc."""
    url, uids, root = pacs
    env = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
    with running_server(url, tmp_path / "fresh.log", env=env) as fresh:
        datalist = requests.get(f"{fresh}/datastore/", params={"output": "train"}, timeout=120).json()
    assert [Path(item["image"]).name for item in datalist] == [f"{uids['Phantom CT']}.nii.gz"]
    back = sitk.ReadImage(datalist[0]["label"])
    reference = gdcm_series_image(root / "dicom" / "phantom_ct")
    assert np.array_equal(sitk.GetArrayFromImage(back).transpose(2, 1, 0), _asymmetric_label(reference.GetSize()))
    assert np.allclose(back.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert np.allclose(back.GetDirection(), reference.GetDirection())


def test_evaluate_reads_labelled_series_from_the_pacs(server, pacs, phantom_checkpoint, tmp_path):
    """``evaluate --studies <DICOMweb URL>``: the series with a SEG, converted once into a local folder."""
    from medicosam_app.cli import main

    url, uids, _ = pacs
    arguments = ["evaluate", "--studies", url, "--checkpoint", str(phantom_checkpoint), "--cache-dir", str(tmp_path),
                 "--precision", "fp32", "--labels", "liver,spine", "--no-3d", "--start", "box",
                 "--max-slices-per-image", "2", "--iterations", "2", "--quiet", "--json", str(tmp_path / "run.json")]
    assert main(arguments) == 0
    document = json.loads((tmp_path / "run.json").read_text())
    assert document["images"] == [uids["Phantom CT"]] and document["objects"]
    assert {o["class_name"] for o in document["objects"]} <= {"liver", "spine"}
    converted = next((tmp_path / "dicomweb" / "labelled").glob(f"*/{uids['Phantom CT']}.nii.gz"))
    stamp = converted.stat().st_mtime_ns
    assert main(arguments) == 0 and converted.stat().st_mtime_ns == stamp  # not downloaded again
    label = sitk.ReadImage(str(converted.parent / "labels" / "final" / converted.name))
    reference = gdcm_series_image(pacs[2] / "dicom" / "phantom_ct")
    assert np.array_equal(sitk.GetArrayFromImage(label).transpose(2, 1, 0), _asymmetric_label(reference.GetSize()))


@pytest.mark.parametrize("series, status, message", [
    ("CT with a gap", 422, "missing 1 slice(s)"),
    ("CT uneven", 422, "uneven slice spacing"),
    ("Report", 422, "is a SR series, not an image"),
])
def test_series_that_are_not_one_volume_get_a_clear_error(server, pacs, series, status, message):
    _, uids, _ = pacs
    response = requests.post(
        f"{server}/infer/medicosam_interactive", params={"image": uids[series], "output": "image"},
        files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[5, 5, 5]])))}, timeout=120,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


@pytest.mark.parametrize("image, status, message", [
    ("1.2.3.4.5", 404, "is not in the PACS"),
    ("../../etc/passwd", 422, "is not a DICOM SeriesInstanceUID"),
])
def test_unknown_or_malformed_series_ids_are_refused(server, image, status, message):
    response = requests.post(
        f"{server}/infer/medicosam_interactive", params={"image": image, "output": "image"},
        files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[5, 5, 5]])))}, timeout=60,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_a_label_of_the_wrong_size_is_refused_and_nothing_reaches_the_pacs(server, pacs, tmp_path):
    url, uids, _ = pacs
    before = len(DICOMwebClient(url).search_for_series(search_filters={"Modality": "SEG"}))
    sitk.WriteImage(sitk.Image(10, 10, 10, sitk.sitkUInt8), str(tmp_path / "small.nii.gz"))
    with open(tmp_path / "small.nii.gz", "rb") as label:
        response = requests.put(
            f"{server}/datastore/label", params={"image": uids["MNI152 T1"], "tag": "final"},
            files={"label": ("small.nii.gz", label), "params": (None, json.dumps({"label_info": []}))}, timeout=120,
        )
    assert response.status_code == 422 and "size" in response.json()["detail"]
    assert len(DICOMwebClient(url).search_for_series(search_filters={"Modality": "SEG"})) == before


def test_slicer_downloads_the_pacs_series_as_the_volume_it_indexes(server, pacs, tmp_path):
    """Slicer fetches the image by SeriesInstanceUID; its voxel [i, j, k] must be the server's (MR: RAS-flipped)."""
    _, uids, root = pacs
    response = requests.get(f"{server}/datastore/image", params={"image": uids["MNI152 T1"]}, timeout=120)
    assert response.status_code == 200
    (tmp_path / "mr.nii.gz").write_bytes(response.content)
    served = sitk.ReadImage(str(tmp_path / "mr.nii.gz"))
    reference = gdcm_series_image(root / "dicom" / "mni_mr")
    assert np.array_equal(sitk.GetArrayFromImage(served), sitk.GetArrayFromImage(reference))
    assert np.allclose(served.GetDirection(), reference.GetDirection(), atol=1e-5)
    assert np.allclose(served.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1), atol=1e-5)
    assert np.allclose(served.GetOrigin(), reference.GetOrigin(), atol=1e-3)


def test_a_corrected_label_is_a_new_seg_and_wins_on_read_back(server, pacs, phantom_checkpoint, tmp_path):
    """Saving again after a correction adds a SEG; a fresh server reads the newest, and counts the image once."""
    url, uids, root = pacs
    ct = uids["Phantom CT"]
    reference = gdcm_series_image(root / "dicom" / "phantom_ct")
    corrected = _asymmetric_label(reference.GetSize())
    corrected[20:60, 25:50, 10:30] = 0  # the annotator removed the first structure
    corrected[100:110, 40:50, 15:20] = 1  # and drew it elsewhere
    image = sitk.GetImageFromArray(corrected.transpose(2, 1, 0))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(tmp_path / "corrected.nii.gz"))
    before = len(DICOMwebClient(url).search_for_series(search_filters={"Modality": "SEG"}))
    slicer_client(server, tmp_path / "client").save_label(ct, str(tmp_path / "corrected.nii.gz"), tag="final", params={
        "label_info": [{"name": "liver", "idx": 1}, {"name": "spine", "idx": 2}],
    })
    assert len(DICOMwebClient(url).search_for_series(search_filters={"Modality": "SEG"})) == before + 1

    env = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
    with running_server(url, tmp_path / "fresh.log", env=env) as fresh:
        stats = requests.get(f"{fresh}/datastore/", params={"output": "stats"}, timeout=60).json()
        datalist = requests.get(f"{fresh}/datastore/", params={"output": "train"}, timeout=120).json()
    assert stats["completed"] == 1
    [item] = [i for i in datalist if Path(i["image"]).name == f"{ct}.nii.gz"]
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(item["label"])).transpose(2, 1, 0), corrected)


def test_an_instance_label_becomes_a_seg_with_one_segment_per_instance(server, pacs, tmp_path):
    """``medicosam_instances`` on a PACS series, saved as Slicer saves it (its segments' names and values):
    one SEG segment per instance, its class in the segment label, voxel-exact against the answer."""
    url, uids, root = pacs
    mr = uids["MNI152 T1"]
    size = gdcm_series_image(root / "dicom" / "mni_mr").GetSize()
    ci, cj, ck = (n // 2 for n in size)
    boxes = [
        {"box": [ci - 20, ci - 2, cj - 15, cj + 15, ck - 3, ck + 3], "class": "grey_matter"},
        {"box": [ci + 2, ci + 20, cj - 15, cj + 15, ck - 3, ck + 3], "class": "grey_matter"},
        {"box": [ci - 10, ci + 10, cj + 18, cj + 30, ck - 2, ck + 2], "class": "white_matter"},
    ]
    client = slicer_client(server, tmp_path / "client")
    path, answer = client.infer("medicosam_instances", mr, {
        "mode": "boxes", "boxes": boxes, "iou_threshold": 0, "min_predicted_iou": 0, "result_extension": ".nii.gz",
    })
    records = answer["instances"]
    assert len(records) >= 2, answer
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    client.save_label(mr, str(path), tag="final", params={
        "label_info": [{"name": name, "idx": value} for name, value in answer["label_names"].items()],
    })

    pacs_client = DICOMwebClient(url)
    segs = []
    for meta in pacs_client.search_for_series(search_filters={"Modality": "SEG"}):
        meta = pydicom.Dataset.from_json(meta)
        segs += pacs_client.retrieve_series(str(meta.StudyInstanceUID), str(meta.SeriesInstanceUID))
    [seg] = [s for s in segs if s.ReferencedSeriesSequence[0].SeriesInstanceUID == mr]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [r["name"] for r in records]
    assert {s.SegmentLabel.rsplit(" ", 1)[0] for s in seg.SegmentSequence} <= {"grey_matter", "white_matter"}

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(root / "dicom" / "mni_mr"))
    sop_uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    parsed = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(_bytes(seg))))
    frames = parsed.get_pixels_by_source_instance(sop_uids, combine_segments=True, assert_missing_frames_are_empty=True)
    assert np.array_equal(frames.transpose(2, 1, 0), label)
