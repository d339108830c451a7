"""A PACS full of what is not CT or MR: a MONOCHROME1 chest radiograph, a colour ultrasound clip, a palette-colour
ultrasound from pydicom's own test files, a JPEG-compressed colour clip nobody on the team wrote, next to a
report and a DICOM SEG. Through a real Orthanc and the real server: every image series is listed (the report
and the SEG never), a click on the radiograph (OHIF's request) gives the core's mask, a clip is served as a clip,
and a label on the radiograph becomes a DICOM SEG in Orthanc that references the radiograph's instance."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient

import build_dicom
from dicom_test_files import pydicom_file
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from projection_files import asymmetric_picture, write_dicom

from .harness import running_server, slicer_client, wait_for_model
from .orthanc import running_orthanc, upload

pytestmark = pytest.mark.server
OHIF_PARAMS = {"background": [], "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False,
               "restore_label_idx": False}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pacs2d")
    files = root / "upload"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dicom(files / "cr.dcm", 4095 - asymmetric_picture(40, 56), "CR", "MONOCHROME1",
                    ImagerPixelSpacing=[0.2, 0.1], SeriesDescription="Chest PA")
        write_dicom(files / "us.dcm", asymmetric_picture(30, 40, frames=5, colour=True), "US", frames=True,
                    FrameTime=40.0, SeriesDescription="Echo clip")
    for name in ("OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm"):
        shutil.copy(pydicom_file(name), files / name)
    build_dicom.write_text_report(root / "report", build_dicom.uid("reports"))
    with running_orthanc(root / "orthanc") as url:
        upload(url, files, root / "report")
        uids = {}
        for found in DICOMwebClient(url).search_for_series():
            series = pydicom.Dataset.from_json(found)
            uids[str(series.get("SeriesDescription", "") or series.Modality)] = str(series.SeriesInstanceUID)
        for name in ("OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm"):
            uids[name] = str(pydicom.dcmread(str(files / name), stop_before_pixels=True).SeriesInstanceUID)
        yield url, uids, files


@pytest.fixture(scope="module")
def server(pacs, tiny_checkpoint, tmp_path_factory):
    url, _, _ = pacs
    log = tmp_path_factory.mktemp("logs") / "server.log"
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(url, log, env=env) as server_url:
        assert wait_for_model(server_url)["available"]
        yield server_url


def test_every_image_series_is_listed_and_no_report(server, pacs):
    _, uids, _ = pacs
    stats = requests.get(f"{server}/datastore/", params={"output": "stats"}, timeout=30).json()
    assert stats["total"] == 4  # the radiograph, the clip and the two pydicom test files; not the report
    images = {uids[n] for n in ("Chest PA", "Echo clip", "OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm")}
    picked = {requests.post(f"{server}/activelearning/random", json={}, timeout=60).json()["id"] for _ in range(12)}
    assert picked <= images and uids["Report"] not in picked


def test_a_click_on_a_monochrome1_radiograph_gives_the_core_mask_on_its_grid(server, pacs, tiny_checkpoint, tmp_path):
    _, uids, files = pacs
    response = requests.post(
        f"{server}/infer/medicosam_interactive", params={"image": uids["Chest PA"], "output": "image"},
        files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[33, 12, 0]])))}, timeout=120,
    )
    assert response.status_code == 200, response.text[:1000]
    (tmp_path / "mask.nrrd").write_bytes(response.content)
    mask = sitk.ReadImage(str(tmp_path / "mask.nrrd"))
    assert mask.GetSize() == (56, 40, 1) and mask.GetSpacing()[:2] == pytest.approx((0.1, 0.2))
    expected = InteractiveSegmenter(ModelProvider(str(tiny_checkpoint), allow_download=False)).segment(
        files / "cr.dcm", requested({"foreground": [[33, 12, 0]]}), ClickContext("cr")).label
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask).transpose(2, 1, 0), expected)


def test_a_clip_is_served_to_slicer_as_a_colour_clip_with_its_frame_time(server, pacs, tmp_path):
    _, uids, _ = pacs
    response = requests.get(f"{server}/datastore/image", params={"image": uids["Echo clip"]}, timeout=120)
    assert response.status_code == 200, response.text[:500]
    (tmp_path / "clip.nrrd").write_bytes(response.content)
    clip = sitk.ReadImage(str(tmp_path / "clip.nrrd"))
    assert clip.GetSize() == (40, 30, 5) and clip.GetNumberOfComponentsPerPixel() == 3
    assert clip.GetMetaData("medicosam_layout") == "cine" and float(clip.GetMetaData("medicosam_frame_time_ms")) == 40.0
    info = requests.get(f"{server}/datastore/image/info", params={"image": uids["Echo clip"]}, timeout=30).json()
    assert info["layout"] == "cine" and info["frame_time_ms"] == 40.0


@pytest.mark.parametrize("name,layout", [("OBXXXX1A.dcm", "plane"), ("color3d_jpeg_baseline.dcm", "cine")])
def test_real_vendor_colour_files_open_as_a_picture_and_a_clip(server, pacs, name, layout):
    _, uids, _ = pacs
    for uid in (uids[name],):
        response = requests.post(
            f"{server}/infer/medicosam_3d", params={"image": uid, "output": "json"},
            data={"params": json.dumps({"foreground": [[200, 150, 0]], "iou_threshold": 0.0})}, timeout=300,
        )
        assert response.status_code == 200, response.text[:1000]
        assert response.json()["layout"] == layout


def test_a_label_on_the_radiograph_becomes_a_seg_that_references_its_instance(server, pacs, tmp_path):
    url, uids, files = pacs
    client = slicer_client(server, tmp_path / "client")
    path, _ = client.infer("medicosam_interactive", uids["Chest PA"], {"foreground": [[33, 12, 0]], **OHIF_PARAMS})
    client.save_label(uids["Chest PA"], str(path), tag="final", params={"label_info": [{"name": "nodule", "idx": 1}]})
    pacs_client = DICOMwebClient(url)
    segs = pacs_client.search_for_series(search_filters={"Modality": "SEG"})
    assert len(segs) == 1
    meta = pydicom.Dataset.from_json(segs[0])
    seg = pacs_client.retrieve_series(str(meta.StudyInstanceUID), str(meta.SeriesInstanceUID))[0]
    radiograph = pydicom.dcmread(str(files / "cr.dcm"), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        radiograph.SOPInstanceUID
    assert requests.get(f"{server}/datastore/", timeout=30).ok  # the listing still holds no SEG as an image
    assert str(meta.SeriesInstanceUID) not in client.datastore()["objects"]


def test_a_label_on_a_clip_is_kept_and_says_why_no_seg_was_written(server, pacs, tmp_path):
    url, uids, _ = pacs
    client = slicer_client(server, tmp_path / "client")
    path, _ = client.infer("medicosam_3d", uids["Echo clip"],
                           {"roi": [20, 30, 8, 16, 2, 2], "iou_threshold": 0.0, **OHIF_PARAMS})
    before = len(DICOMwebClient(url).search_for_series(search_filters={"Modality": "SEG"}))
    client.save_label(uids["Echo clip"], str(path), tag="final", params={"label_info": [{"name": "valve", "idx": 1}]})
    info = requests.get(f"{server}/datastore/label/info",
                        params={"label": uids["Echo clip"], "tag": "final"}, timeout=30).json()
    assert "frames of a clip" in info["pacs"]
    assert len(DICOMwebClient(url).search_for_series(search_filters={"Modality": "SEG"})) == before
    saved = requests.get(f"{server}/datastore/label", params={"label": uids["Echo clip"], "tag": "final"}, timeout=30)
    assert saved.ok
    (tmp_path / "saved.nrrd").write_bytes(saved.content)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "saved.nrrd"))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(path))))


def test_a_raw_labelmap_as_ohif_holds_it_is_saved_on_a_colour_clip(server, pacs, tmp_path):
    """OHIF's labelmap is one uint8 per voxel, i fastest; the clip's colour channels are not voxels."""
    _, uids, _ = pacs
    label = np.zeros((40, 30, 5), np.uint8)
    label[5:20, 3:9, 1:4] = 2  # asymmetric: a transposed or channel-counting reader misplaces it
    raw = label.ravel(order="F").tobytes()
    response = requests.put(f"{server}/datastore/label", params={"image": uids["Echo clip"], "tag": "ohif"},
                            files={"label": ("label.bin", raw), "params": (None, json.dumps({"label_info": []}))},
                            timeout=60)
    assert response.status_code == 200, response.text[:500]
    saved = requests.get(f"{server}/datastore/label", params={"label": uids["Echo clip"], "tag": "ohif"}, timeout=30)
    (tmp_path / "saved.nii.gz").write_bytes(saved.content)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "saved.nii.gz"))).transpose(2, 1, 0),
                                  label)
    short = requests.put(f"{server}/datastore/label", params={"image": uids["Echo clip"], "tag": "ohif"},
                         files={"label": ("label.bin", raw[:-7]), "params": (None, json.dumps({"label_info": []}))},
                         timeout=60)
    assert short.status_code == 422 and "one uint8 value per voxel" in short.text
