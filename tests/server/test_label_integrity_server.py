"""Damaged labels and images through the real server, as 3D Slicer's MONAI Label module sends them.

- A truncated, RGB, fractional, negative or NaN label is refused with 422 and a message saying what to fix
  (and naming no server path); the saved label stays byte for byte, the index unchanged.
- A label without geometry is stored with the image's; a label on another grid is refused.
- A label saved as .nii.gz and then as .nrrd leaves one file; after a corrupt index and a restart the
  newest file is served.
- A click on a truncated image gets a 4xx that says so, not a half-empty mask.

Labels go through the Slicer module's own client library (``MONAILabelClient.save_label``); the image is
asymmetric (40 × 30 × 12, oblique, anisotropic) and labels hold random classes, so a transposed, shifted or
truncated label cannot pass.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array, write_volume

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server

SHAPE = (40, 30, 12)
SPACING, ORIGIN = (0.7, 1.3, 3.0), (10.0, -20.0, 5.0)  # write_volume's defaults: the images' geometry
LABEL_INFO = {"label_info": [{"name": "organ", "idx": 1}, {"name": "lesion", "idx": 2}]}
INDEX = "datastore_v2.json"


def random_label(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, SHAPE).astype(np.uint8)


def _studies(folder: Path) -> Path:
    folder.mkdir(parents=True)
    write_volume(folder / "scan.nii.gz", asymmetric_array(SHAPE))
    write_volume(folder / "plain.nii.gz", asymmetric_array(SHAPE, seed=9))
    whole = write_volume(folder.parent / "whole.nii.gz", asymmetric_array(SHAPE, seed=11)).read_bytes()
    (folder / "truncated.nii.gz").write_bytes(whole[: len(whole) // 2])
    return folder


@pytest.fixture(scope="module")
def site(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    studies = _studies(root / "studies")
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
    with running_server(studies, root / "server.log", env=env) as url:
        assert wait_for_model(url)["available"], (root / "server.log").read_text()[-2000:]
        yield {"url": url, "studies": studies, "root": root, "env": env}


def save(site, image: str, path: Path, tag: str = "final") -> Tuple[int, str]:
    """``MONAILabelClient.save_label`` as the Slicer module calls it: (status, detail)."""
    client = slicer_client(site["url"], site["root"] / "client")  # puts the Slicer module on sys.path
    from MONAILabelLib.client import MONAILabelClientException

    try:
        client.save_label(image, str(path), tag=tag, params=dict(LABEL_INFO))
        return 200, ""
    except MONAILabelClientException as error:
        status, response = re.match(r"Status: (\d+); Response: (.*)", error.msg, re.S).groups()
        return int(status), json.loads(response)["detail"]


def download_label(site, image: str, tmp_path: Path, tag: str = "final", url: str = "") -> Tuple[bytes, sitk.Image]:
    response = requests.get(f"{url or site['url']}/datastore/label", params={"label": image, "tag": tag}, timeout=30)
    assert response.status_code == 200, response.text
    name = re.search(r'filename="?([^";]+)', response.headers["content-disposition"]).group(1)
    path = tmp_path / f"downloaded_{time.monotonic_ns()}_{name}"
    path.write_bytes(response.content)
    return response.content, sitk.ReadImage(str(path))


def voxels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def label_file(path: Path, array: np.ndarray, **geometry) -> Path:
    return write_volume(path, array, **geometry)


# -- refused uploads ---------------------------------------------------------------------------------


def _bad_labels(folder: Path):
    """(case, file the client uploads, words the answer must contain)."""
    good = label_file(folder / "source.nii.gz", random_label(seed=21)).read_bytes()
    cases = []
    for name, content in (("first 200 bytes", good[:200]), ("last 40 bytes cut", good[:-40])):
        path = folder / name.replace(" ", "_") / "label.nii.gz"
        path.parent.mkdir()
        path.write_bytes(content)
        cases.append((name, path, "truncated"))
    rgb = sitk.Compose([sitk.GetImageFromArray(random_label(seed=22).transpose(2, 1, 0))] * 3)
    rgb.SetSpacing(SPACING), rgb.SetOrigin(ORIGIN), rgb.SetDirection(OBLIQUE_AXIAL_DIRECTION)
    (folder / "rgb").mkdir()
    sitk.WriteImage(rgb, str(folder / "rgb" / "label.nii.gz"))
    cases.append(("RGB", folder / "rgb" / "label.nii.gz", "3 values per voxel"))
    for case, values, message in (
        ("float 0.5 and 1.7", (0.5, 1.7), "fractional"),
        ("negative", (-1.0, -7.0), "negative"),
        ("NaN", (np.nan, 1.0), "not finite"),
    ):
        array = random_label(seed=23).astype(np.float32)
        array[5, 6, 7], array[33, 2, 10] = values
        path = folder / case.replace(" ", "_") / "label.nii.gz"
        path.parent.mkdir()
        cases.append((case, label_file(path, array), message))
    array = random_label(seed=24).astype(np.float32)
    array[1, 1, 1] = np.nan
    (folder / "nan_nrrd").mkdir()
    cases.append(("NaN in NRRD", label_file(folder / "nan_nrrd" / "label.nrrd", array), "not finite"))
    return cases


def test_damaged_labels_are_refused_and_the_saved_label_stays(site, tmp_path):
    good = random_label(seed=20)
    assert save(site, "scan", label_file(tmp_path / "label.nii.gz", good)) == (200, "")
    saved_file = site["studies"] / "labels" / "final" / "scan.nii.gz"
    saved, index = saved_file.read_bytes(), (site["studies"] / INDEX).read_bytes()
    served, _ = download_label(site, "scan", tmp_path)
    assert served == saved

    for case, path, message in _bad_labels(tmp_path):
        status, detail = save(site, "scan", path)
        assert status == 422, f"{case}: {status} {detail}"
        assert message in detail, f"{case}: {detail}"
        assert "/tmp" not in detail and str(tmp_path) not in detail and ".cxx" not in detail and ".h:" not in detail
        assert saved_file.read_bytes() == saved, case
        assert (site["studies"] / INDEX).read_bytes() == index, case
        assert download_label(site, "scan", tmp_path)[0] == saved, case
    assert sorted(os.listdir(saved_file.parent)) == ["scan.nii.gz"]

    # What stays allowed: class values up to 65535 (atlases), floats holding whole numbers (the soak test's)
    atlas = random_label(seed=25).astype(np.uint16) * 21845  # 0, 21845, 43690, 65535
    assert save(site, "scan", label_file(tmp_path / "atlas.nii.gz", atlas), tag="atlas") == (200, "")
    assert np.array_equal(voxels(download_label(site, "scan", tmp_path, tag="atlas")[1]), atlas)
    whole = random_label(seed=26).astype(np.float32)
    assert save(site, "scan", label_file(tmp_path / "float.nii.gz", whole), tag="float") == (200, "")


# -- geometry ----------------------------------------------------------------------------------------


def test_a_label_without_geometry_is_stored_with_the_images(site, tmp_path):
    label = random_label(seed=30)
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(label.transpose(2, 1, 0)), str(path))  # spacing 1, origin 0, identity
    assert save(site, "plain", path, tag="no_geometry") == (200, "")
    _, stored = download_label(site, "plain", tmp_path, tag="no_geometry")
    image = sitk.ReadImage(str(site["studies"] / "plain.nii.gz"))
    assert np.allclose(stored.GetSpacing(), image.GetSpacing())
    assert np.allclose(stored.GetOrigin(), image.GetOrigin())
    assert np.allclose(stored.GetDirection(), image.GetDirection(), atol=1e-6)
    assert np.array_equal(voxels(stored), label)  # voxel [i, j, k] of the upload is voxel [i, j, k] of the image

    # The image's grid give or take float rounding (a NIfTI image's geometry is float32): stored as sent.
    near = sitk.GetImageFromArray(random_label(seed=32).transpose(2, 1, 0))
    near.CopyInformation(image)
    near.SetOrigin(tuple(float(o) + 1e-5 for o in image.GetOrigin()))  # far below a voxel (0.7 mm)
    near.SetDirection(tuple(float(d) + 1e-7 for d in image.GetDirection()))
    sitk.WriteImage(near, str(tmp_path / "near.nrrd"))
    assert save(site, "plain", tmp_path / "near.nrrd", tag="near") == (200, "")
    assert download_label(site, "plain", tmp_path, tag="near")[0] == (tmp_path / "near.nrrd").read_bytes()


@pytest.mark.parametrize("case, geometry, word", [
    ("another spacing", {"spacing": (0.7, 1.3, 2.5)}, "spacing"),
    ("shifted origin", {"origin": (10.0, -17.4, 5.0)}, "origin"),
    ("identity direction", {"direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}, "direction"),
])
def test_a_label_on_another_grid_is_refused(site, tmp_path, case, geometry, word):
    status, detail = save(site, "plain", label_file(tmp_path / "label.nii.gz", random_label(seed=31), **geometry),
                          tag="moved")
    assert status == 422, f"{case}: {status} {detail}"
    assert word in detail and "image's grid" in detail, detail
    assert not (site["studies"] / "labels" / "moved").exists() or not os.listdir(site["studies"] / "labels" / "moved")


# -- another format, a rebuilt index -------------------------------------------------------------------


def test_a_label_saved_as_nrrd_after_nii_gz_leaves_one_file_and_survives_an_index_rebuild(site, tmp_path):
    labels = site["studies"] / "labels" / "reformatted"
    first, second = random_label(seed=40), random_label(seed=41)
    assert save(site, "scan", label_file(tmp_path / "label.nii.gz", first), tag="reformatted") == (200, "")
    newer = tmp_path / "slicer" / "label.nrrd"
    newer.parent.mkdir()
    assert save(site, "scan", label_file(newer, second), tag="reformatted") == (200, "")
    assert sorted(os.listdir(labels)) == ["scan.nrrd"]
    assert np.array_equal(voxels(download_label(site, "scan", tmp_path, tag="reformatted")[1]), second)

    # An older version of the server left both files; the newer one is the .nrrd (the old code took .nii.gz).
    stale = labels / "scan.nii.gz"
    label_file(stale, first)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    index = site["studies"] / INDEX
    index.write_text(index.read_text()[:100])  # what an in-place rewrite killed halfway leaves
    with running_server(site["studies"], site["root"] / "restarted.log", env=site["env"]) as url:
        _, served = download_label(site, "scan", tmp_path, tag="reformatted", url=url)
        assert np.array_equal(voxels(served), second)
        listing = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
        assert listing["scan"]["labels"]["reformatted"]["ext"] == ".nrrd"
        assert listing["scan"]["labels"]["final"]  # the other labels came back from the files too


# -- a truncated image in the datastore ------------------------------------------------------------------


@pytest.mark.parametrize("model, params", [
    ("medicosam_interactive", {"foreground": [[30, 7, 5]], "background": [], "slice": 5, "label": "organ"}),
    ("medicosam_3d", {"roi": [20, 30, 5, 12, 3, 7], "label": "organ"}),
])
def test_a_click_on_a_truncated_image_gets_a_4xx_that_says_so(site, model, params):
    response = requests.post(
        f"{site['url']}/infer/{model}", params={"image": "truncated"},
        files={"params": (None, json.dumps({**params, "result_extension": ".nrrd", "result_dtype": "uint8",
                                             "client_id": "slicer-test"}))},
        timeout=120,
    )
    assert 400 <= response.status_code < 500, response.text[:500]
    detail = response.json()["detail"]
    assert "truncated.nii.gz is truncated or corrupt" in detail, detail
    assert "/tmp" not in detail and str(site["studies"]) not in detail
    ok = requests.post(f"{site['url']}/infer/medicosam_interactive", params={"image": "scan", "output": "json"},
                       files={"params": (None, json.dumps({"foreground": [[30, 7, 5]], "slice": 5}))}, timeout=120)
    assert ok.status_code == 200, ok.text[:500]
