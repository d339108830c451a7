"""DICOM SEG over every shape a PACS sends: a radiograph without a frame of reference, an enhanced MR whose
frames are stored shuffled (the SEG must reference each source frame by number, in stored order), and a clip
without a frame of reference, which highdicom 0.22 cannot reference frame by frame (refused with the reason)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest

from medicosam_app.dicom.image import read_dicom_files, read_dicom_folder
from medicosam_app.dicom.label_colors import label_color
from medicosam_app.dicom.seg import SegmentationAuthor, label_to_seg, seg_to_label, seg_unsupported
from medicosam_app.errors import InvalidRequestError
from projection_files import asymmetric_picture, write_dicom
from test_dicom_enhanced import _classic_oblique_mr, _shuffled_enhanced

AUTHOR = SegmentationAuthor("MedicoSAM", "tiny xxh128:0123", "MedicoSAM Label test")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _through_bytes(dataset):
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _asymmetric_label(shape):
    label = np.zeros(shape, dtype=np.uint8)
    label[3:9, 2:5, :] = 1
    label[shape[0] // 2:, shape[1] - 4:, -1] = 7  # the last slice only: a reversed order would move it
    return label


def test_a_label_on_a_radiograph_goes_to_a_seg_and_back(tmp_path):
    path = write_dicom(tmp_path / "cr" / "cr.dcm", asymmetric_picture(30, 45), "CR", "MONOCHROME1")
    image = read_dicom_files([path])
    assert "FrameOfReferenceUID" not in pydicom.dcmread(str(path))
    label = _asymmetric_label((45, 30, 1))
    seg = _through_bytes(label_to_seg(label, image, {1: "nodule", 7: "rib"}, AUTHOR))
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == image.series_uid
    np.testing.assert_array_equal(seg_to_label(seg, image), label)
    # Each segment carries its class colour, as our viewer shows the class: label 1 red, label 7 orange.
    from skimage.color import lab2rgb

    for segment, value in zip(seg.SegmentSequence, (1, 7)):
        l_star, a_star, b_star = segment.RecommendedDisplayCIELabValue
        lab = np.array([l_star / 65535 * 100, a_star / 65535 * 255 - 128, b_star / 65535 * 255 - 128], dtype=float)
        rgb = np.round(lab2rgb(lab.reshape(1, 1, 3))[0, 0] * 255)
        assert np.abs(rgb - label_color(value)).max() <= 2, (value, rgb)


def test_a_label_on_a_shuffled_enhanced_mr_references_each_stored_frame(tmp_path):
    classic = _classic_oblique_mr(tmp_path / "classic")
    permutation = np.random.default_rng(7).permutation(12)
    (tmp_path / "enhanced").mkdir()
    _shuffled_enhanced(classic, tmp_path / "enhanced" / "enhanced.dcm", permutation)
    image = read_dicom_folder(tmp_path / "enhanced")
    assert image.layout == "volume" and [n for _, n in image.frames] != list(range(1, 13))
    label = _asymmetric_label(image.array.shape)
    seg = _through_bytes(label_to_seg(label, image, {1: "tumour", 7: "oedema"}, AUTHOR))
    np.testing.assert_array_equal(seg_to_label(seg, image), label)
    # Frame by frame: the SEG frame showing label value 7 (slice k = 11 here) names the stored frame of slice 11.
    stored_frame_of_last_slice = image.frames[-1][1]
    referenced = [int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                  for item in seg.PerFrameFunctionalGroupsSequence]
    assert stored_frame_of_last_slice in referenced


@pytest.mark.parametrize("frame_of_reference", [None, "1.2.826.0.1.3680043.8.498.1"])
def test_a_clip_is_refused_with_the_reason_with_or_without_a_frame_of_reference(tmp_path, frame_of_reference):
    extra = {"FrameOfReferenceUID": frame_of_reference} if frame_of_reference else {}
    path = write_dicom(tmp_path / "us.dcm", asymmetric_picture(30, 40, frames=4, colour=True), "US", frames=True,
                       **extra)
    image = read_dicom_files([path])
    reason = seg_unsupported(image.datasets(), len(image.frames))
    assert reason and "frames of a clip" in reason
    with pytest.raises(InvalidRequestError, match="kept on this server"):
        label_to_seg(np.zeros(image.array.shape[:3], np.uint8), image, {}, AUTHOR)


def test_a_stack_of_pictures_is_refused_with_the_reason(tmp_path):
    uid = pydicom.uid.generate_uid()
    for n, name in enumerate(("a.dcm", "b.dcm"), start=1):
        write_dicom(tmp_path / name, asymmetric_picture(seed=n), "DX", series_uid=uid, instance=n,
                    FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.2")
    image = read_dicom_folder(tmp_path)
    assert image.layout == "stack"
    assert "2 separate images without patient positions" in seg_unsupported(image.datasets(), 2)
