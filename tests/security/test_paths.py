"""The one check every request value that becomes a file name passes (medicosam_app.security.paths)."""

from __future__ import annotations

import os

import pytest

from medicosam_app.security import (
    MAX_NAME_BYTES,
    UnsafePathError,
    confined_path,
    safe_extension,
    safe_name,
    safe_upload_filename,
)

TRAVERSAL_SPELLINGS = [
    "..", ".", "../x", "../../../../tmp/x", "..\\..\\x", "x/../../y", "a/b", "/etc/passwd", "\\\\server\\share",
    "%2e%2e", "%2e%2e%2fx", "..%2fx", "%2fetc%2fpasswd", "%252e%252e", "x\x00y", "\x00", "", "x\ny", "\x7f",
    ".hidden", ".lock", ".saving_x", "a..b", "x" * (MAX_NAME_BYTES + 1), "é" * (MAX_NAME_BYTES // 2 + 1),
]


@pytest.mark.parametrize("value", TRAVERSAL_SPELLINGS)
def test_unsafe_names_are_refused_with_what_is_allowed(value):
    with pytest.raises(UnsafePathError) as refused:
        safe_name(value, "The label tag")
    assert refused.value.status == 422
    message = str(refused.value)
    assert message.startswith("The label tag") and "plain name" in message and "'..'" in message


@pytest.mark.parametrize("value", [None, 3, b"final", ["final"]])
def test_non_text_is_refused(value):
    with pytest.raises(UnsafePathError, match="not text"):
        safe_name(value, "The image id")


@pytest.mark.parametrize(
    "value", ["final", "original", "subject_0", "1.2.840.113619.2.55.3", "sub-01 T1w", "CT chest (arterial)", "x" * MAX_NAME_BYTES]
)
def test_ordinary_ids_and_tags_pass_unchanged(value):
    assert safe_name(value, "The image id") == value


@pytest.mark.parametrize("value", [".nii.gz", ".nii", ".nrrd", ".dcm", ".bin", ".seg.nrrd"])
def test_usual_extensions_pass(value):
    assert safe_extension(value) == value


@pytest.mark.parametrize("value", ["", "nii", ".", "..", "./", ".%2e", ".nii/../x", ".a.b.c.d", ".n ii", None, ".x\x00"])
def test_odd_extensions_are_refused(value):
    with pytest.raises(UnsafePathError, match="extension"):
        safe_extension(value)


def test_confined_path_stays_inside_and_names_the_entry_not_a_link_target(tmp_path):
    root = tmp_path / "store"
    (root / "labels" / "final").mkdir(parents=True)
    path = confined_path(root, "labels/final", "a.nii.gz")
    assert path == os.path.join(os.path.realpath(root), "labels", "final", "a.nii.gz")
    assert confined_path(root, "a.nii.gz") == os.path.join(os.path.realpath(root), "a.nii.gz")


@pytest.mark.parametrize("names", [("..", "x"), ("labels", "..", "..", "x"), ("/etc", "passwd"), ("labels", "..")])
def test_confined_path_refuses_joins_that_leave_the_folder(tmp_path, names):
    (tmp_path / "store" / "labels").mkdir(parents=True)
    with pytest.raises(UnsafePathError):
        confined_path(tmp_path / "store", *names)


def test_confined_path_refuses_symlinks_that_point_out(tmp_path):
    root, outside = tmp_path / "store", tmp_path / "outside"
    (root / "labels").mkdir(parents=True)
    outside.mkdir()
    (root / "labels" / "evil").symlink_to(outside, target_is_directory=True)
    (root / "labels" / "file.nii.gz").symlink_to(outside / "victim.nii.gz")
    with pytest.raises(UnsafePathError, match="outside the datastore"):
        confined_path(root, "labels/evil", "x.nii.gz")
    with pytest.raises(UnsafePathError, match="outside the datastore"):
        confined_path(root, "labels", "file.nii.gz")


def test_a_symlinked_datastore_folder_itself_is_fine(tmp_path):
    real = tmp_path / "real"
    (real / "labels").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert confined_path(tmp_path / "link", "labels", "x.nii.gz") == str(real.resolve() / "labels" / "x.nii.gz")


@pytest.mark.parametrize("value", ["..%2fx.nii.gz", "%2e%2e%2fx.nii.gz", "x\x00.nii.gz", ".nii.gz", "dir/.hidden.nii.gz",
                                   "a/..", "c:\\x\\..", "x" * 300 + ".nii.gz", "x\n.nii.gz"])
def test_upload_file_names_whose_last_component_is_no_plain_name_are_refused(value):
    with pytest.raises(UnsafePathError, match="The uploaded file's name"):
        safe_upload_filename(value)


@pytest.mark.parametrize("value, name", [
    ("/tmp/tmpk2j4/label.nii.gz", "label.nii.gz"),  # MONAI Label's client (Slicer) sends its temp file's path
    ("C:\\Users\\rad\\AppData\\Local\\Temp\\tmpq1.nrrd", "tmpq1.nrrd"),  # the same client on Windows
    ("../../x.nii.gz", "x.nii.gz"),
    ("a/b.nii.gz", "b.nii.gz"),
])
def test_a_client_path_is_cut_to_its_file_name(value, name):
    assert safe_upload_filename(value) == name


@pytest.mark.parametrize("value", [None, "", "label.nii.gz", "Segmentation-label.seg.nrrd", "image.nii"])
def test_plain_upload_file_names_pass(value):
    assert safe_upload_filename(value) == value
