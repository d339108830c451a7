"""2D images through the real server and the 3D Slicer module's client: a colour photograph (PNG), a radiograph
stored MONOCHROME1 (one DICOM file), an ultrasound-like clip (TIFF, frames in time) and a two-channel microscopy
TIFF sit in a folder datastore beside nothing else. Each answer is compared with the core run in this process
on the same file, and its geometry with the image's (spacing from the radiograph's detector)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk
import tifffile
from PIL import Image

from medicosam_app.api import PropagationFields, InstanceRequest
from conftest import requested
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter
from medicosam_app.model.provider import ModelProvider
from projection_files import asymmetric_picture, write_dicom

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
SLICER = {"result_extension": ".nrrd", "result_dtype": "uint8"}
PERMISSIVE = {"iou_threshold": 0.0, "min_predicted_iou": 0.0}  # a random test model: walk until the mask is empty


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("studies2d")
    Image.fromarray(asymmetric_picture(36, 50, colour=True)).save(folder / "photo.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dicom(folder / "radiograph.dcm", 4095 - asymmetric_picture(40, 56), "CR", "MONOCHROME1",
                    ImagerPixelSpacing=[0.2, 0.1])
    tifffile.imwrite(folder / "clip.tif", asymmetric_picture(30, 40, frames=6), imagej=True, metadata={"axes": "TYX"})
    cells = np.stack([asymmetric_picture(32, 32, seed=1), asymmetric_picture(32, 32, seed=2)])
    tifffile.imwrite(folder / "cells.tif", cells, metadata={"axes": "CYX"})
    return folder


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(studies, log, env=env) as url:
        assert wait_for_model(url)["available"]
        yield url


@pytest.fixture(scope="module")
def models(tiny_checkpoint):
    return ModelProvider(str(tiny_checkpoint), allow_download=False)


def _read(path):
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def test_every_picture_and_clip_is_listed(server, tmp_path):
    objects = slicer_client(server, tmp_path).datastore()["objects"]
    assert set(objects) == {"photo", "radiograph", "clip", "cells"}


@pytest.mark.parametrize("image_id,click,size,spacing", [
    ("photo", [31, 9, 0], (50, 36, 1), (1.0, 1.0)),
    ("radiograph", [33, 12, 0], (56, 40, 1), (0.1, 0.2)),  # ImagerPixelSpacing is (row, column)
    ("cells", [20, 11, 0], (32, 32, 1), (1.0, 1.0)),
])
def test_a_click_on_a_2d_image_answers_the_core_mask_on_the_image_grid(server, studies, models, tmp_path, image_id,
                                                                       click, size, spacing):
    name = next(p.name for p in studies.iterdir() if p.name.split(".")[0] == image_id)
    params = {"foreground": [click], "background": [], "label": "lesion", "reset_state": True}
    path, answer = slicer_client(server, tmp_path).infer("medicosam_interactive", image_id, {**params, **SLICER})
    image, label = _read(path)
    assert image.GetSize() == size and image.GetSpacing()[:2] == pytest.approx(spacing)
    assert answer["layout"] == "plane"
    expected = InteractiveSegmenter(models).segment(studies / name, requested(params), ClickContext(image_id)).label
    np.testing.assert_array_equal(label, expected)


def test_a_box_on_one_frame_of_a_clip_is_followed_through_the_clip(server, studies, models, tmp_path):
    params = {"roi": [22, 32, 6, 16, 2, 2], "label": "vessel", "reset_state": True, **PERMISSIVE}
    path, answer = slicer_client(server, tmp_path).infer("medicosam_3d", "clip", {**params, **SLICER})
    image, label = _read(path)
    assert image.GetSize() == (40, 30, 6) and answer["layout"] == "cine" and answer["prompted_slices"] == [2]
    expected = VolumeSegmenter(models, SliceEmbedder(models)).segment(
        studies / "clip.tif", requested(params), ClickContext("clip"), settings=PropagationFields.read(PERMISSIVE).settings())
    np.testing.assert_array_equal(label, expected.label)
    assert set(answer["predicted_iou"]) == {str(k) for k in expected.result.predicted_iou}


def test_a_frame_step_segments_every_second_frame_and_lists_the_held_ones(server, tmp_path):
    params = {"roi": [22, 32, 6, 16, 2, 2], "frame_step": 2, "reset_state": True, **PERMISSIVE}
    path, answer = slicer_client(server, tmp_path).infer("medicosam_3d", "clip", {**params, **SLICER})
    decoded = set(answer["recomputed_slices"])
    assert decoded <= {0, 2, 4, 5} and 2 in decoded  # the prompted frame, every second one, the last
    assert set(answer["held_slices"]) <= {1, 3} and not decoded & set(answer["held_slices"])
    bad = requests.post(f"{server}/infer/medicosam_3d", params={"image": "clip", "output": "json"},
                        data={"params": json.dumps({"roi": [22, 32, 6, 16, 2, 2], "frame_step": 0})}, timeout=30)
    assert bad.status_code == 422 and "frame_step" in bad.text


def test_a_clip_cut_across_time_is_refused_with_what_to_send(server):
    response = requests.post(f"{server}/infer/medicosam_3d", params={"image": "clip", "output": "json"},
                             data={"params": json.dumps({"foreground": [[20, 10, 2]], "axis": 0})}, timeout=30)
    assert response.status_code == 422
    assert "2D + time clip" in response.text and "axis 0 cannot be used" in response.text


def test_a_label_drawn_on_a_photograph_is_saved_and_served_back(server, tmp_path):
    client = slicer_client(server, tmp_path)
    path, _ = client.infer("medicosam_interactive", "photo", {"foreground": [[31, 9, 0]], **SLICER})
    client.save_label("photo", str(path), tag="final", params={"label_info": [{"name": "lesion", "idx": 1}]})
    saved = requests.get(f"{server}/datastore/label", params={"label": "photo", "tag": "final"}, timeout=10)
    assert saved.ok
    (tmp_path / "saved.nrrd").write_bytes(saved.content)
    np.testing.assert_array_equal(_read(tmp_path / "saved.nrrd")[1], _read(path)[1])


@pytest.mark.parametrize("image_id", ["photo", "cells"])
def test_automatic_instances_on_a_photograph_and_a_microscopy_image(server, studies, models, tmp_path, image_id):
    from medicosam_app.instances.segmenter import InstanceSegmenter
    from medicosam_app.semantic.segmenter import SemanticSegmenter
    from medicosam_app.learning.versions import VersionStore

    params = {"mode": "everything", "points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    path, answer = slicer_client(server, tmp_path).infer("medicosam_instances", image_id, {**params, **SLICER})
    _, label = _read(path)
    assert answer["slice"] == 0 and label.shape[2] == 1
    embedder = SliceEmbedder(models)
    core = InstanceSegmenter(models, embedder, SemanticSegmenter(VersionStore(tmp_path / "none"), embedder))
    name = next(p.name for p in studies.iterdir() if p.name.split(".")[0] == image_id)
    np.testing.assert_array_equal(label, core.segment(studies / name, InstanceRequest.read(params).options()).instances.label)


def test_a_dicom_radiograph_is_served_to_slicer_as_the_image_the_server_reads(server, studies, tmp_path):
    """Slicer opens what it downloads with its own reader: a DICOM radiograph goes out as the server's NRRD
    (presented pixels, detector spacing), so the label it gets back overlays at the same scale."""
    from medicosam_app.geometry.volume import read_volume

    response = requests.get(f"{server}/datastore/image", params={"image": "radiograph"}, timeout=30)
    assert response.ok and 'radiograph.nrrd' in response.headers.get("content-disposition", "")
    (tmp_path / "radiograph.nrrd").write_bytes(response.content)
    served, voxels = _read(tmp_path / "radiograph.nrrd")
    assert served.GetSpacing()[:2] == pytest.approx((0.1, 0.2)) and served.GetMetaData("medicosam_layout") == "plane"
    np.testing.assert_array_equal(voxels, read_volume(studies / "radiograph.dcm").array)
    again = requests.get(f"{server}/datastore/image", params={"image": "radiograph"}, timeout=30)
    assert again.content == response.content  # converted once, served from the copy
