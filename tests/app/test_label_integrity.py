"""Truncated and corrupt image files: the whole-file check, the image reader, and the label checks of the
datastore (in this process; tests/server/test_label_integrity_server.py drives the same through the server).

SimpleITK reads several of these files without an error, with zeros where voxels are missing; each case
says what SimpleITK does, so a test that passes because SimpleITK already refuses is visible as such.
Volumes are asymmetric (40 × 30 × 12) with random voxels, so files compress poorly and every cut lands in
the voxel data.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array, write_volume
from medicosam_app.errors import ImageReadError, InvalidRequestError
from medicosam_app.geometry.file_integrity import IncompleteFileError, check_file_complete, count_nonfinite
from medicosam_app.geometry.volume import read_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps" / "medicosam"))
from lib.datastore import CheckedLocalDatastore  # noqa: E402
from medicosam_app.geometry.label_check import label_value_problems  # noqa: E402

SHAPE = (40, 30, 12)
EXTENSIONS = ["*.nii.gz", "*.nii", "*.nrrd"]  # as the server's (MONAI Label's MONAI_LABEL_DATASTORE_FILE_EXT)
SPACING, ORIGIN = (0.7, 1.3, 3.0), (10.0, -20.0, 5.0)


def random_label(shape=SHAPE, seed: int = 0, classes: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, shape).astype(np.uint8)


def write(path: Path, array: np.ndarray, compress: bool) -> bytes:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(OBLIQUE_AXIAL_DIRECTION)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path.read_bytes()


def sitk_reads(path: Path):
    """What SimpleITK makes of the file: its voxels, or None if it raises."""
    try:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    except RuntimeError:
        return None


# (file name, compressed, what the check calls the encoding)
FORMATS = [
    ("label.nii.gz", True, "gzip"),
    ("label.nii", False, "raw"),
    ("label.nrrd", True, "gzip"),  # 3D Slicer writes its .nrrd and .seg.nrrd with gzip encoding
    ("label.nrrd", False, "raw"),
    ("label.mha", False, "raw"),
    ("label.mha", True, "zlib"),
]
FORMAT_IDS = ["nii.gz", "nii", "nrrd-gzip", "nrrd-raw", "mha-raw", "mha-zlib"]


@pytest.mark.parametrize("name, compress, encoding", FORMATS, ids=FORMAT_IDS)
def test_a_complete_file_passes_and_reports_its_voxel_data(tmp_path, name, compress, encoding):
    label = random_label()
    write(tmp_path / name, label, compress)
    found = check_file_complete(tmp_path / name)
    assert found.encoding == encoding
    assert found.data_bytes == found.expected_bytes == label.size  # uint8: one byte per voxel
    assert np.array_equal(sitk_reads(tmp_path / name), label)


@pytest.mark.parametrize("cut", ["last byte", "last 4 bytes", "last 40 bytes", "half", "first 400 bytes"])
@pytest.mark.parametrize("name, compress, encoding", FORMATS, ids=FORMAT_IDS)
def test_a_truncated_file_is_refused(tmp_path, name, compress, encoding, cut):
    data = write(tmp_path / name, random_label(), compress)
    keep = {"last byte": len(data) - 1, "last 4 bytes": len(data) - 4, "last 40 bytes": len(data) - 40,
            "half": len(data) // 2, "first 400 bytes": 400}[cut]
    cut_file = tmp_path / f"cut_{name}"
    cut_file.write_bytes(data[:keep])
    with pytest.raises(IncompleteFileError, match="truncated"):
        check_file_complete(cut_file)


def test_simpleitk_alone_reads_truncated_nifti_as_zeros(tmp_path):
    """Why the check exists: a cut .nii.gz and .nii decode without an error, with voxels lost."""
    label = random_label()
    gz = write(tmp_path / "label.nii.gz", label, True)
    raw = write(tmp_path / "label.nii", label, False)
    (tmp_path / "cut.nii.gz").write_bytes(gz[:-1])
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    for name in ("cut.nii.gz", "cut.nii"):
        decoded = sitk_reads(tmp_path / name)
        assert decoded is not None and np.count_nonzero(decoded) < np.count_nonzero(label)
        with pytest.raises(IncompleteFileError):
            check_file_complete(tmp_path / name)


def test_a_multi_member_gzip_file_is_complete_only_with_every_member_whole(tmp_path):
    label = random_label()
    nifti = gzip.decompress(write(tmp_path / "one.nii.gz", label, True))
    members = gzip.compress(nifti[:5000]) + gzip.compress(nifti[5000:9000]) + gzip.compress(nifti[9000:])
    (tmp_path / "members.nii.gz").write_bytes(members)
    assert check_file_complete(tmp_path / "members.nii.gz").data_bytes == label.size
    assert np.array_equal(sitk_reads(tmp_path / "members.nii.gz"), label)  # a valid gzip file: readers join them
    (tmp_path / "cut.nii.gz").write_bytes(members[:-9])  # the last member lost its trailer
    with pytest.raises(IncompleteFileError, match="end-of-stream marker"):
        check_file_complete(tmp_path / "cut.nii.gz")
    # every member complete, but the voxels of the last are missing: the NIfTI header says how many there are
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(nifti[:5000]) + gzip.compress(nifti[5000:9000]))
    with pytest.raises(IncompleteFileError, match="NIfTI header describes 14400"):
        check_file_complete(tmp_path / "short.nii.gz")


@pytest.mark.parametrize("garbage", [b"\x00", b"\x00" * 16, b"garbage!", b"\x1f"])
@pytest.mark.parametrize("name, compress", [("label.nii.gz", True), ("label.nrrd", True), ("label.mha", True)],
                         ids=["nii.gz", "nrrd-gzip", "mha-zlib"])
def test_bytes_after_the_compressed_stream_are_refused(tmp_path, name, compress, garbage):
    data = write(tmp_path / name, random_label(), compress)
    (tmp_path / f"joined_{name}").write_bytes(data + garbage)
    with pytest.raises(IncompleteFileError, match="follow the end"):
        check_file_complete(tmp_path / f"joined_{name}")


def test_a_damaged_byte_in_compressed_data_is_refused(tmp_path):
    """teem (NRRD) never checks the gzip CRC: SimpleITK hands out changed voxels."""
    label = random_label()
    data = bytearray(write(tmp_path / "label.nrrd", label, True))
    data[len(data) * 3 // 4] ^= 0x55
    (tmp_path / "damaged.nrrd").write_bytes(bytes(data))
    with pytest.raises(IncompleteFileError, match="corrupt"):
        check_file_complete(tmp_path / "damaged.nrrd")


def test_raw_files_may_hold_more_than_their_header_says(tmp_path):
    data = write(tmp_path / "label.nii", random_label(), False)
    (tmp_path / "longer.nii").write_bytes(data + b"\x00" * 8)
    assert check_file_complete(tmp_path / "longer.nii").data_bytes == random_label().size + 8


def test_an_empty_file_and_a_cut_header_are_refused(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(IncompleteFileError, match="empty"):
        check_file_complete(tmp_path / "empty.nii.gz")
    data = write(tmp_path / "label.nrrd", random_label(), True)
    (tmp_path / "header.nrrd").write_bytes(data[:100])
    with pytest.raises(IncompleteFileError, match="header does not end"):
        check_file_complete(tmp_path / "header.nrrd")


def test_voxels_in_another_file_are_refused_for_uploads(tmp_path):
    """An uploaded header pointing at another file would make the server read any file it can reach."""
    (tmp_path / "secret.raw").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "detached.nrrd").write_bytes(
        b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 16 8 8\nencoding: raw\ndata file: "
        + str(tmp_path / "secret.raw").encode() + b"\n\n")
    (tmp_path / "detached.mha").write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 16 8 8\nElementType = MET_UCHAR\nElementDataFile = "
        + str(tmp_path / "secret.raw").encode() + b"\n")
    for name in ("detached.nrrd", "detached.mha"):
        assert sitk_reads(tmp_path / name) is not None  # SimpleITK follows the pointer
        with pytest.raises(IncompleteFileError, match="another file"):
            check_file_complete(tmp_path / name, allow_detached_data=False)
        with pytest.raises(IncompleteFileError, match="not a file beside it"):  # images too: an absolute path
            check_file_complete(tmp_path / name)


def _detached_pair(folder, reference: str):
    """A NRRD and a MetaImage header whose voxels are in ``reference``."""
    (folder / "pair.nrrd").write_bytes(
        b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 16 8 8\nencoding: raw\ndata file: " + reference.encode() + b"\n\n")
    (folder / "pair.mhd").write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 16 8 8\nElementType = MET_UCHAR\nElementDataFile = "
        + reference.encode() + b"\n")
    return folder / "pair.nrrd", folder / "pair.mhd"


def test_detached_voxels_of_an_image_must_lie_beside_its_header(tmp_path):
    """A .mhd/.raw pair in the datastore is fine; a header reaching elsewhere is refused before SimpleITK opens
    the file it names (a path up, down, absolute, a LIST, or a link beside it that leads out)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.raw").write_bytes(bytes(range(256)) * 4)
    store = tmp_path / "store"
    (store / "sub").mkdir(parents=True)
    (store / "pair.raw").write_bytes(bytes(16 * 8 * 8))
    (store / "sub" / "inner.raw").write_bytes(bytes(16 * 8 * 8))
    (store / "link.raw").symlink_to(outside / "secret.raw")
    for header in _detached_pair(store, "pair.raw"):
        assert check_file_complete(header).encoding == "detached"
    for reference in ("../outside/secret.raw", str(outside / "secret.raw"), "sub/inner.raw", "LIST", "link.raw"):
        for header in _detached_pair(store, reference):
            with pytest.raises(IncompleteFileError, match="beside|outside the header"):
                check_file_complete(header)


def test_nan_in_a_float_nifti_is_counted_although_simpleitk_reads_it_as_zero(tmp_path):
    label = random_label().astype(np.float32)
    label[3, 4, 5], label[30, 20, 10] = np.nan, np.inf
    for name, compress in (("label.nii.gz", True), ("label.nii", False)):
        write(tmp_path / name, label, compress)
        assert not np.isnan(sitk_reads(tmp_path / name)).any()  # nifti1_io zeroes them
        assert count_nonfinite(tmp_path / name, check_file_complete(tmp_path / name)) == 2
    write(tmp_path / "integer.nii.gz", random_label(), True)
    assert count_nonfinite(tmp_path / "integer.nii.gz", check_file_complete(tmp_path / "integer.nii.gz")) == 0


def test_other_formats_are_left_to_their_decoder(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(random_label()[:, :, 0]), str(tmp_path / "slice.png"))
    assert check_file_complete(tmp_path / "slice.png").format == "other"


# -- the reader every task uses -------------------------------------------------------------------


def test_read_volume_refuses_a_truncated_image_naming_the_file(tmp_path):
    data = write_volume(tmp_path / "ct.nii.gz", asymmetric_array(SHAPE)).read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    assert read_volume(tmp_path / "ct.nii.gz").shape == SHAPE
    with pytest.raises(ImageReadError, match=r"truncated\.nii\.gz is truncated or corrupt") as refused:
        read_volume(tmp_path / "truncated.nii.gz")
    assert refused.value.status == 422 and str(tmp_path) not in str(refused.value)


# -- the datastore's label checks, in this process -----------------------------------------------


@pytest.fixture()
def store(tmp_path) -> CheckedLocalDatastore:
    folder = tmp_path / "store"
    folder.mkdir()
    write_volume(folder / "scan.nii.gz", asymmetric_array(SHAPE))
    return CheckedLocalDatastore(str(folder), extensions=EXTENSIONS)


def test_label_values_must_be_whole_numbers_0_to_65535():
    assert label_value_problems(np.array([0, 1, 65535], np.uint16)) == []
    assert label_value_problems(np.array([0.0, 2.0, 65535.0], np.float64)) == []
    problems = label_value_problems(np.array([[0.5, 1.7, -1.0], [np.nan, np.inf, 65536.0]], np.float32))
    assert [p.split(" voxel")[0] for p in problems] == ["2", "2", "1", "1"]
    assert "not finite" in problems[0] and "fractional" in problems[1] and "negative" in problems[2]
    assert "above 65535" in problems[3]
    assert label_value_problems(np.array([-3, 0], np.int16)) == ["1 voxel(s) are negative (lowest -3)"]


def _save(store, path: Path, tag="final"):
    return store.save_label("scan", str(path), tag, {"label_info": [{"name": "x", "idx": 1}]})


def test_a_refused_label_leaves_the_saved_one_and_the_index_byte_for_byte(store, tmp_path):
    folder = Path(store._datastore_path)
    good = write_volume(tmp_path / "good.nii.gz", random_label())
    _save(store, good)
    saved = (folder / "labels" / "final" / "scan.nii.gz").read_bytes()
    index = (folder / "datastore_v2.json").read_bytes()
    data = good.read_bytes()
    bad = {"cut.nii.gz": data[:200], "tail.nii.gz": data[:-40]}
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    for name, value in (("half.nii.gz", 0.5), ("negative.nii.gz", -2), ("nan.nii.gz", np.nan)):
        array = random_label().astype(np.float32)
        array[1, 2, 3] = value
        write_volume(tmp_path / name, array)
    rgb = sitk.Compose([sitk.GetImageFromArray(random_label().transpose(2, 1, 0))] * 3)
    rgb.SetSpacing(SPACING), rgb.SetOrigin(ORIGIN), rgb.SetDirection(OBLIQUE_AXIAL_DIRECTION)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nii.gz"))
    for name in [*bad, "half.nii.gz", "negative.nii.gz", "nan.nii.gz", "rgb.nii.gz"]:
        with pytest.raises(InvalidRequestError) as refused:
            _save(store, tmp_path / name)
        assert refused.value.status == 422, name
        assert str(tmp_path) not in str(refused.value) and "/tmp" not in str(refused.value)
        assert (folder / "labels" / "final" / "scan.nii.gz").read_bytes() == saved, name
        assert (folder / "datastore_v2.json").read_bytes() == index, name


def test_a_label_without_geometry_gets_the_images(store, tmp_path):
    label = random_label()
    sitk.WriteImage(sitk.GetImageFromArray(label.transpose(2, 1, 0)), str(tmp_path / "plain.nii.gz"))
    _save(store, tmp_path / "plain.nii.gz")
    saved = sitk.ReadImage(os.path.join(store._datastore_path, "labels", "final", "scan.nii.gz"))
    assert np.allclose(saved.GetSpacing(), SPACING) and np.allclose(saved.GetOrigin(), ORIGIN)
    assert np.allclose(saved.GetDirection(), OBLIQUE_AXIAL_DIRECTION, atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(saved).transpose(2, 1, 0), label)


def test_a_label_on_another_grid_is_refused(store, tmp_path):
    write_volume(tmp_path / "moved.nii.gz", random_label(), origin=(10.0, -20.0, 8.0))
    with pytest.raises(InvalidRequestError) as refused:
        _save(store, tmp_path / "moved.nii.gz")
    assert refused.value.status == 422 and "origin" in str(refused.value)
    assert "image's grid" in str(refused.value)
    assert not os.path.exists(os.path.join(store._datastore_path, "labels", "final", "scan.nii.gz"))


def test_a_label_saved_in_another_format_replaces_the_old_file(store, tmp_path):
    folder = Path(store._datastore_path) / "labels" / "final"
    _save(store, write_volume(tmp_path / "label.nii.gz", random_label(seed=1)))
    _save(store, write_volume(tmp_path / "label.nrrd", random_label(seed=2)))
    assert sorted(os.listdir(folder)) == ["scan.nrrd"]
    assert store.get_label_uri("scan", "final").endswith("scan.nrrd")


def test_a_rebuilt_index_takes_the_newest_file_of_a_label(store, tmp_path):
    """Files an older server version left: both formats on disk, and the index unreadable. Either format
    may be the newer one (the old rebuild took the first extension listed: .nii.gz)."""
    folder = Path(store._datastore_path)
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    arrays = {".nii.gz": random_label(seed=3), ".nrrd": random_label(seed=4)}
    for newest, older in ((".nrrd", ".nii.gz"), (".nii.gz", ".nrrd")):
        for ext, stamp in ((older, time.time() - 3600), (newest, time.time())):
            write_volume(labels / f"scan{ext}", arrays[ext])
            os.utime(labels / f"scan{ext}", (stamp, stamp))
        (folder / "datastore_v2.json").write_text('{"objects": {"scan": ')
        rebuilt = CheckedLocalDatastore(str(folder), extensions=EXTENSIONS)
        uri = rebuilt.get_label_uri("scan", "final")
        assert uri.endswith(f"scan{newest}")
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(uri)).transpose(2, 1, 0), arrays[newest])
        index = json.loads((folder / "datastore_v2.json").read_text())
        assert index["objects"]["scan"]["labels"]["final"]["ext"] == newest
