"""DICOM series checks and DICOM SEG round trips, on series written by the sample-data script."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import build_dicom
from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array
from medicosam_app.dicom.seg import SegmentationAuthor, label_names, label_to_seg, seg_to_label
from medicosam_app.dicom.series import DicomSeriesError, read_series_folder
from medicosam_app.errors import InvalidRequestError

AUTHOR = SegmentationAuthor("MedicoSAM", "tiny xxh128:0123", "MedicoSAM Label test")


def _oblique_image() -> sitk.Image:
    image = sitk.GetImageFromArray((asymmetric_array() * 100).astype(np.int16).transpose(2, 1, 0))
    image.SetSpacing((0.7, 0.9, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection(OBLIQUE_AXIAL_DIRECTION)
    return image


def _write(folder: Path, **kwargs) -> Path:
    build = build_dicom
    build.write_series(_oblique_image(), folder, "CT", "oblique", build.uid("test-study"), 1, **kwargs)
    return folder


def _pixels(series) -> np.ndarray:
    return sitk.GetArrayFromImage(series.to_sitk()).transpose(2, 1, 0)


def test_series_reads_in_normal_order_whatever_the_file_order(tmp_path):
    folder = _write(tmp_path / "ct")
    # Rename files so that name order runs against slice order: the reader must sort by position.
    for path in sorted(folder.glob("*.dcm")):
        path.rename(folder / f"z{1000 - int(path.stem)}.dcm")
    series = read_series_folder(folder)
    image = series.to_sitk()
    assert image.GetSize() == (40, 30, 12)
    assert np.allclose(image.GetDirection(), OBLIQUE_AXIAL_DIRECTION, atol=1e-5)
    assert np.allclose(image.GetSpacing(), (0.7, 0.9, 2.0), atol=1e-5)
    assert np.allclose(image.GetOrigin(), (10.0, -20.0, 30.0), atol=1e-4)
    assert np.array_equal(_pixels(series), (asymmetric_array() * 100).astype(np.int16))


def test_missing_slice_is_named_with_its_position(tmp_path):
    with pytest.raises(DicomSeriesError, match=r"missing 2 slice\(s\): the spacing is 2.00 mm but there is a gap of 6.00 mm"):
        read_series_folder(_write(tmp_path / "gap", skip_slices=(5, 6)))


def test_uneven_spacing_is_refused(tmp_path):
    positions = [2.0 * k + (0.7 if k > 6 else 0.0) for k in range(12)]
    with pytest.raises(DicomSeriesError, match="uneven slice spacing"):
        read_series_folder(_write(tmp_path / "uneven", slice_positions=positions))


def test_duplicate_positions_are_refused(tmp_path):
    folder = _write(tmp_path / "dup")
    copy = pydicom.dcmread(str(folder / "0003.dcm"))
    copy.SOPInstanceUID = build_dicom.uid("duplicate")
    copy.save_as(folder / "dup.dcm")
    with pytest.raises(DicomSeriesError, match="two slices at the same position"):
        read_series_folder(folder)


def test_mixed_orientation_is_refused(tmp_path):
    folder = _write(tmp_path / "tilted")
    tilted = pydicom.dcmread(str(folder / "0004.dcm"))
    tilted.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    tilted.save_as(folder / "0004.dcm")
    with pytest.raises(DicomSeriesError, match="mixes slice orientations"):
        read_series_folder(folder)


def test_non_image_series_is_refused(tmp_path):
    build = build_dicom
    build.write_text_report(tmp_path / "sr", build.uid("test-study"))
    with pytest.raises(DicomSeriesError, match="is a SR series, not an image"):
        read_series_folder(tmp_path / "sr")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    with pytest.raises(DicomSeriesError, match="no DICOM instances"):
        read_series_folder(tmp_path / "empty")


def _through_bytes(dataset):
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_seg_round_trip_keeps_label_values_and_names(tmp_path):
    series = read_series_folder(_write(tmp_path / "ct"))
    label = np.zeros((40, 30, 12), dtype=np.uint8)
    label[3:12, 4:9, 2:5] = 5
    label[30:38, 20:28, 9] = 2  # one slice only, near the top
    seg = _through_bytes(label_to_seg(label, series, label_names([{"name": "liver", "idx": 5}]), AUTHOR))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["label 2", "liver"]
    identification = seg.SegmentSequence[1].SegmentationAlgorithmIdentificationSequence[0]
    assert (identification.AlgorithmName, identification.AlgorithmVersion) == ("MedicoSAM", "tiny xxh128:0123")
    assert seg.SeriesDescription == "MedicoSAM label (tiny xxh128:0123)"
    assert int(seg.NumberOfFrames) == 4  # empty frames are left out
    assert np.array_equal(seg_to_label(seg, series), label)


def test_the_seg_names_the_user_who_saved_it(tmp_path):
    series = read_series_folder(_write(tmp_path / "ct"))
    author = SegmentationAuthor("MedicoSAM", "tiny xxh128:0123", "MedicoSAM Label test", creator="alice")
    seg = _through_bytes(label_to_seg(np.ones((40, 30, 12), dtype=np.uint8), series, {}, author))
    assert str(seg.ContentCreatorName) == "alice^" and seg.ContentCreatorName.family_name == "alice"
    unsigned = _through_bytes(label_to_seg(np.ones((40, 30, 12), dtype=np.uint8), series, {}, AUTHOR))
    assert not unsigned.get("ContentCreatorName")  # sign-in off: nobody is named


def test_an_empty_label_is_a_valid_seg(tmp_path):
    series = read_series_folder(_write(tmp_path / "ct"))
    seg = _through_bytes(label_to_seg(np.zeros((40, 30, 12), dtype=np.uint8), series, {}, AUTHOR))
    assert not seg_to_label(seg, series).any()


def test_seg_refuses_a_label_of_another_shape_and_another_series(tmp_path):
    series = read_series_folder(_write(tmp_path / "ct"))
    with pytest.raises(InvalidRequestError, match=r"size \[30, 40, 12\]"):
        label_to_seg(np.zeros((30, 40, 12), dtype=np.uint8), series, {}, AUTHOR)
    seg = _through_bytes(label_to_seg(np.ones((40, 30, 12), dtype=np.uint8), series, {}, AUTHOR))
    build = build_dicom
    other = tmp_path / "other"
    build.write_series(_oblique_image(), other, "CT", "other", build.uid("other-study"), 2)
    with pytest.raises(InvalidRequestError, match="references series"):
        seg_to_label(seg, read_series_folder(other))
    shutil.rmtree(other)
