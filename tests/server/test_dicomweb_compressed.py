"""Series a real Orthanc stores compressed reach the model with their geometry: the server downloads them in
the stored transfer syntax (WADO-RS ``transfer-syntax=*``) and decodes them itself.

Orthanc's own codecs cannot decompress JPEG 2000, so before this the server's WADO-RS download (which asked
for the default, uncompressed syntax) answered 502 for such a series. Here Orthanc holds the CT phantom
stored as JPEG 2000 (lossless and lossy), RLE (both encoded here, Orthanc cannot), JPEG-LS, JPEG lossless,
deflate and big-endian (transcoded by Orthanc), 12-bit JPEG extended and JPEG-LS near-lossless, 8-bit JPEG
baseline, and series built from scanner vendors' compressed instances. Each served image is compared with
what GDCM reads from the files exactly as Orthanc stores them, and, where lossless, with the original voxels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, NamedTuple, Optional

import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from pydicom.encaps import encapsulate, generate_pixel_data_frame
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

import build_datastore
import build_dicom
from conftest import gdcm_series_image

from .harness import running_server, wait_for_model
from .orthanc import running_orthanc, stored_files, transcode_series, upload

pytestmark = pytest.mark.server

VENDOR_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
OHIF_PARAMS = {"background": [], "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False,
               "restore_label_idx": False}


class Stored(NamedTuple):
    """One series in Orthanc: its UID, the syntax Orthanc stores it in, and the voxels it was made from."""

    uid: str
    transfer_syntax: str
    original: Optional[np.ndarray]  # [k, j, i]; None for vendor series
    max_error: float = 0.0  # 0: lossless


def _twelve_bit(phantom: sitk.Image) -> sitk.Image:
    return sitk.Clamp(sitk.Cast(phantom, sitk.sitkInt32) + 1024, lowerBound=0, upperBound=4095)


def _eight_bit(phantom: sitk.Image) -> sitk.Image:
    """A soft-tissue window of the phantom in 0..255: JPEG baseline holds 8 bits only."""
    hu = sitk.GetArrayFromImage(phantom).astype(float)
    image = sitk.GetImageFromArray(np.clip(np.round((hu + 160.0) * 255.0 / 400.0), 0, 255).astype(np.uint8))
    image.CopyInformation(phantom)
    return image


def _truncate_frame(path: Path) -> None:
    dataset = pydicom.dcmread(str(path))
    frame = next(generate_pixel_data_frame(dataset.PixelData))
    dataset.PixelData = encapsulate([frame[: len(frame) // 3]])
    dataset.save_as(path, write_like_original=True)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compressed_pacs")
    dicom = root / "dicom"
    build = build_dicom
    study = build.uid("compressed-study")
    phantom = build_datastore.make_ct_phantom()
    twelve, eight = _twelve_bit(phantom), _eight_bit(phantom)
    voxels = {name: sitk.GetArrayFromImage(image) for name, image in
              {"plain": phantom, "12 bit": twelve, "8 bit": eight}.items()}
    uids = {
        "plain": build.write_series(phantom, dicom / "plain", "CT", "plain", study, 1),
        "12 bit": build.write_series(twelve, dicom / "12bit", "CT", "12 bit", study, 2, bits_stored=12, signed=False),
        "8 bit": build.write_series(eight, dicom / "8bit", "CT", "8 bit", study, 3, bits_stored=8, signed=False),
    }
    series: Dict[str, Stored] = {
        "plain": Stored(uids["plain"], ExplicitVRLittleEndian, voxels["plain"]),
        "12 bit": Stored(uids["12 bit"], ExplicitVRLittleEndian, voxels["12 bit"]),
        "8 bit": Stored(uids["8 bit"], ExplicitVRLittleEndian, voxels["8 bit"]),
    }
    # Encoded here: Orthanc's DCMTK writes neither JPEG 2000 nor RLE.
    for number, (name, syntax, max_error) in enumerate([
        ("J2K lossless", JPEG2000Lossless, 0.0), ("J2K lossy", JPEG2000, 80.0), ("RLE", RLELossless, 0.0),
    ], start=10):
        uid = build.write_transcoded_copy(dicom / "plain", dicom / name, syntax, name, number, jpeg2000_ratio=10)
        series[name] = Stored(uid, syntax, voxels["plain"], max_error)
    # Real vendor pixel data: a stack mixing five syntaxes of one MR slice, and a 512² JPEG 2000 CT slice.
    mixed = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm", "MR_small_jpeg_ls_lossless.dcm",
             "MR_small_jp2klossless.dcm"]
    uid = build.write_stack_of([VENDOR_FILES / n for n in mixed], dicom / "vendor mixed", 2.0, study, "vendor mixed", 20)
    mr_small = pydicom.dcmread(str(VENDOR_FILES / "MR_small.dcm")).pixel_array
    series["vendor mixed"] = Stored(uid, "", np.stack([mr_small] * len(mixed)))
    uid = build.write_stack_of([VENDOR_FILES / "693_J2KI.dcm"], dicom / "vendor J2K CT", 1.0, study, "vendor J2K CT", 21)
    series["vendor J2K CT"] = Stored(uid, JPEG2000, None)
    # The same CT as one enhanced multi-frame instance (opened as the same volume), and what cannot be opened:
    # a JPEG 2000 series with a damaged slice.
    broken = root / "broken"
    enhanced = build.write_enhanced_copy(dicom / "plain", broken / "enhanced", "Enhanced CT", 30)
    damaged = build.write_transcoded_copy(dicom / "plain", broken / "damaged", JPEG2000Lossless, "damaged J2K", 31)
    _truncate_frame(broken / "damaged" / "0007.dcm")

    with running_orthanc(root / "orthanc") as url:
        upload(url, dicom, broken)
        # Transcoded by Orthanc itself, stored as new series of the same study.
        for name, source, syntax, max_error in [
            ("JPEG-LS lossless", "plain", JPEGLSLossless, 0.0),
            ("JPEG lossless", "plain", JPEGLosslessSV1, 0.0),
            ("deflate", "plain", DeflatedExplicitVRLittleEndian, 0.0),
            ("big-endian", "plain", ExplicitVRBigEndian, 0.0),
            ("JPEG-LS near-lossless", "12 bit", JPEGLSNearLossless, 10.0),
            ("JPEG extended", "12 bit", JPEGExtended12Bit, 60.0),
            ("JPEG baseline", "8 bit", JPEGBaseline8Bit, 32.0),
        ]:
            uid = transcode_series(url, series[source].uid, syntax, name)
            series[name] = Stored(uid, syntax, series[source].original, max_error)
        references = {}
        for name, stored in series.items():
            folder = stored_files(url, stored.uid, root / "stored" / name)
            syntaxes = {pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID
                        for f in folder.iterdir()}
            assert syntaxes == ({stored.transfer_syntax} if stored.transfer_syntax else syntaxes), name
            references[name] = folder
        yield url, series, references, {"enhanced": enhanced, "damaged": damaged}, root


@pytest.fixture(scope="module")
def server(pacs, phantom_checkpoint):
    url, _, _, _, root = pacs
    env = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}
    with running_server(url, root / "server.log", env=env) as server_url:
        assert wait_for_model(server_url)["available"], (root / "server.log").read_text()[-2000:]
        yield server_url


def _served_image(server: str, uid: str, path: Path) -> sitk.Image:
    response = requests.get(f"{server}/datastore/image", params={"image": uid}, timeout=180)
    assert response.status_code == 200, response.text[:1000]
    path.write_bytes(response.content)
    return sitk.ReadImage(str(path))


def _cached_download(root: Path, uid: str) -> Path:
    """The server's own download of the series in its DICOM cache."""
    [folder] = [p for p in (root / "cache").rglob(str(uid)) if p.is_dir()]
    return folder


SERIES = ["plain", "J2K lossless", "J2K lossy", "RLE", "JPEG-LS lossless", "JPEG lossless", "deflate", "big-endian",
          "JPEG-LS near-lossless", "JPEG extended", "JPEG baseline", "8 bit", "12 bit", "vendor mixed", "vendor J2K CT"]


@pytest.mark.parametrize("name", SERIES)
def test_series_stored_compressed_is_served_in_gdcm_geometry(server, pacs, name, tmp_path):
    _, series, references, _, root = pacs
    stored = series[name]
    served = _served_image(server, stored.uid, tmp_path / "served.nii.gz")

    # The server asked for the stored syntax: its cache holds the files as Orthanc stores them.
    cached = sorted(_cached_download(root, stored.uid).glob("*.dcm"))
    assert {pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID for f in cached} == \
        {pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID
         for f in references[name].iterdir()}

    reference = gdcm_series_image(references[name])
    assert served.GetSize() == reference.GetSize()
    assert np.allclose(served.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    assert np.allclose(served.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    assert np.allclose(served.GetDirection(), reference.GetDirection(), atol=1e-5)
    voxels = sitk.GetArrayFromImage(served)
    assert np.array_equal(voxels, sitk.GetArrayFromImage(reference))
    if stored.original is None:
        return
    error = np.abs(voxels.astype(float) - stored.original.astype(float))
    if stored.max_error == 0:
        assert error.max() == 0, f"{name} is lossless"
    else:
        # Lossy, but bounded: a flip, a transpose or a misread sign would be off by hundreds everywhere.
        assert 0 < error.max() <= stored.max_error, error.max()
        assert error.mean() < stored.max_error / 4


def test_a_click_on_a_jpeg2000_series_gives_the_mask_of_the_uncompressed_one(server, pacs):
    _, series, _, _, _ = pacs
    masks = []
    for name in ("plain", "J2K lossless"):
        response = requests.post(
            f"{server}/infer/medicosam_interactive", params={"image": series[name].uid, "output": "image"},
            files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[64, 50, 20]])))}, timeout=180,
        )
        assert response.status_code == 200, response.text[:1000]
        masks.append(response.content[response.content.index(b"\n\n") + 2:])
    assert masks[0] == masks[1] and any(masks[0])


def test_an_enhanced_copy_of_a_series_opens_as_the_same_volume_and_gives_the_same_mask(server, pacs, tmp_path):
    """One Legacy Converted Enhanced CT instance (frames placed by functional groups) against the classic series
    it was made from: the same voxels, the same geometry, the same mask for the same click."""
    _, series, _, other, _ = pacs
    images = []
    for name, uid in (("classic.nii.gz", series["plain"].uid), ("enhanced.nrrd", other["enhanced"])):
        response = requests.get(f"{server}/datastore/image", params={"image": uid}, timeout=180)
        assert response.status_code == 200, response.text[:1000]
        (tmp_path / name).write_bytes(response.content)
        images.append(sitk.ReadImage(str(tmp_path / name)))
    classic, enhanced = images
    assert np.array_equal(sitk.GetArrayFromImage(classic), sitk.GetArrayFromImage(enhanced))
    assert np.allclose(classic.GetSpacing(), enhanced.GetSpacing(), atol=1e-4)
    assert np.allclose(classic.GetOrigin(), enhanced.GetOrigin(), atol=1e-3)
    assert np.allclose(classic.GetDirection(), enhanced.GetDirection(), atol=1e-5)
    masks = []
    for uid in (series["plain"].uid, other["enhanced"]):
        response = requests.post(
            f"{server}/infer/medicosam_interactive", params={"image": uid, "output": "image"},
            files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[64, 50, 20]])))}, timeout=180,
        )
        assert response.status_code == 200, response.text[:1000]
        masks.append(response.content[response.content.index(b"\n\n") + 2:])
    assert masks[0] == masks[1] and any(masks[0])


@pytest.mark.parametrize("case, message", [
    ("damaged", "the pixel data of slice 7 of 40"),
])
def test_series_that_cannot_be_opened_answer_422_and_the_server_keeps_serving(server, pacs, case, message):
    _, series, _, unopenable, _ = pacs
    response = requests.get(f"{server}/datastore/image", params={"image": unopenable[case]}, timeout=180)
    assert response.status_code == 422, response.text[:1000]
    assert message in response.json()["detail"]
    click = requests.post(
        f"{server}/infer/medicosam_interactive", params={"image": unopenable[case], "output": "image"},
        files={"params": (None, json.dumps(dict(OHIF_PARAMS, foreground=[[5, 5, 5]])))}, timeout=180,
    )
    assert click.status_code == 422 and message in click.json()["detail"]
    assert requests.get(f"{server}/info/", timeout=10).status_code == 200
    assert requests.get(f"{server}/datastore/image", params={"image": series["RLE"].uid}, timeout=180).status_code == 200
