"""Series stored compressed, as a PACS holds them: every transfer syntax opens with GDCM's geometry.

Pixel data comes from two places: files that scanner and toolkit vendors compressed (pydicom's test files,
on disk, never fetched), and the asymmetric oblique phantom compressed here (OpenJPEG, pydicom's RLE
encoder, deflate, big-endian). Lossless syntaxes must give back the uncompressed voxels exactly, checked
against an uncompressed original or pydicom's own decoder, never only against GDCM, which is what decodes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.encaps import encapsulate, generate_pixel_data_frame
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000,
    JPEG2000Lossless,
    RLELossless,
)

import build_dicom
from conftest import OBLIQUE_AXIAL_DIRECTION, asymmetric_array, gdcm_series_image
from medicosam_app.dicom.seg import SegmentationAuthor, label_to_seg, seg_to_label
from medicosam_app.dicom.series import DicomSeriesError, read_series_folder
from medicosam_app.dicom.wado import STORED_TRANSFER_SYNTAX, PacsContentError, download_series

VENDOR_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
STUDY = build_dicom.uid("transfer-syntax-study")


def vendor(name: str) -> Path:
    path = VENDOR_FILES / name
    assert path.is_file(), f"pydicom 2.4.4 ships {name} in {VENDOR_FILES}"
    return path


def _voxels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)  # [k, j, i]: slice, row, column


def _assert_gdcm_geometry(image: sitk.Image, folder: Path) -> sitk.Image:
    """Size, spacing, origin, direction and voxels as GDCM reads the same files on its own."""
    reference = gdcm_series_image(folder)
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    assert np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    assert np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
    assert np.array_equal(_voxels(image), _voxels(reference))
    return reference


def _single(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(path, folder / path.name)
    return folder


def _mr_small_pixels() -> np.ndarray:
    """MR_small.dcm, uncompressed little-endian, decoded by pydicom's numpy handler: the reference."""
    original = pydicom.dcmread(str(vendor("MR_small.dcm")))
    assert original.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    return original.pixel_array


# -- vendor-compressed files --------------------------------------------------------------------------

MR_SMALL_VARIANTS = {
    "MR_small_jp2klossless.dcm": "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)",
    "MR_small_RLE.dcm": "RLE Lossless (1.2.840.10008.1.2.5)",
    "MR_small_bigendian.dcm": "Explicit VR Big Endian (1.2.840.10008.1.2.2)",
    "MR_small_expb.dcm": "Explicit VR Big Endian (1.2.840.10008.1.2.2)",
    "MR_small_implicit.dcm": "Implicit VR Little Endian (1.2.840.10008.1.2)",
}


@pytest.mark.parametrize("name", sorted(MR_SMALL_VARIANTS))
def test_vendor_lossless_slice_decodes_to_the_uncompressed_original(name, tmp_path):
    series = read_series_folder(_single(vendor(name), tmp_path / "series"))
    assert series.transfer_syntaxes == [MR_SMALL_VARIANTS[name]]
    image = series.to_sitk()
    _assert_gdcm_geometry(image, tmp_path / "series")
    assert image.GetSize() == (64, 64, 1)
    assert np.allclose(image.GetSpacing()[:2], (0.3125, 0.3125))
    assert np.allclose(image.GetOrigin(), (-83.9063, -91.2, 6.6406), atol=1e-4)
    assert np.array_equal(_voxels(image)[0], _mr_small_pixels())


@pytest.mark.parametrize("name, syntax", [
    ("693_J2KI.dcm", "1.2.840.10008.1.2.4.91"),  # 14-bit signed CT, JPEG 2000
    ("J2K_pixelrep_mismatch.dcm", "1.2.840.10008.1.2.4.90"),  # codestream unsigned, header signed
])
def test_vendor_jpeg2000_ct_decodes_as_pydicom_decodes_it(name, syntax, tmp_path):
    series = read_series_folder(_single(vendor(name), tmp_path / "series"))
    assert series.transfer_syntaxes[0].endswith(f"({syntax})")
    image = series.to_sitk()
    _assert_gdcm_geometry(image, tmp_path / "series")
    # pydicom decodes with OpenJPEG through Pillow and corrects the signedness from the header.
    dataset = pydicom.dcmread(str(vendor(name)))
    expected = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    assert image.GetSize() == (512, 512, 1)
    assert np.array_equal(_voxels(image)[0], expected)
    assert expected.min() < -1000 < 0 < expected.max()  # air and tissue: not a misread sign


def _with_geometry(path: Path, folder: Path) -> Path:
    """A vendor image without patient geometry (NM, secondary capture) given a position and orientation;
    its pixel data bytes stay as the vendor wrote them."""
    folder.mkdir(parents=True)
    dataset = pydicom.dcmread(str(path))
    dataset.ImagePositionPatient = [-10.0, 20.0, 30.0]
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.PixelSpacing = [0.5, 0.25]
    dataset.save_as(folder / path.name, write_like_original=True)
    return folder


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_vendor_jpeg_extended_12_bit_decodes_like_the_jpeg2000_copy_of_the_same_image(name, tmp_path):
    folder = _with_geometry(vendor(name), tmp_path / "series")
    series = read_series_folder(folder)
    assert series.transfer_syntaxes == ["JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51)"]
    image = series.to_sitk()
    _assert_gdcm_geometry(image, folder)
    assert image.GetSize() == (256, 1024, 1)
    assert np.allclose(image.GetSpacing()[:2], (0.25, 0.5))
    # The same image, compressed 76:1 with JPEG; pydicom decodes the JPEG 2000 copy independently of GDCM.
    reference = pydicom.dcmread(str(vendor("JPEG2000.dcm"))).pixel_array.astype(float)
    decoded = _voxels(image)[0].astype(float)
    def similarity(candidate: np.ndarray) -> float:
        return float(np.corrcoef(candidate.ravel(), reference.ravel())[0, 1])

    assert similarity(decoded) > 0.9
    # The body is nearly left-right symmetric; a mirrored or upside-down read still falls far behind.
    assert max(similarity(decoded[:, ::-1]), similarity(decoded[::-1]), similarity(decoded[::-1, ::-1])) < 0.8


def test_vendor_deflated_instance_decodes_to_pydicoms_inflated_pixels(tmp_path):
    folder = _with_geometry(vendor("image_dfl.dcm"), tmp_path / "series")
    series = read_series_folder(folder)
    assert series.transfer_syntaxes == ["Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99)"]
    image = series.to_sitk()
    _assert_gdcm_geometry(image, folder)
    assert np.array_equal(_voxels(image)[0], pydicom.dcmread(str(vendor("image_dfl.dcm"))).pixel_array)


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm",
                                  "MR_small_bigendian.dcm"])
def test_a_stack_of_vendor_compressed_slices_is_one_volume_in_gdcm_geometry(name, tmp_path):
    folder = tmp_path / "stack"
    build_dicom.write_stack_of([vendor(name)] * 6, folder, 3.0, STUDY, f"stack {name}", 1)
    image = read_series_folder(folder).to_sitk()
    _assert_gdcm_geometry(image, folder)
    assert image.GetSize() == (64, 64, 6)
    assert np.isclose(image.GetSpacing()[2], 3.0)
    assert all(np.array_equal(slice_, _mr_small_pixels()) for slice_ in _voxels(image))


def test_a_series_may_mix_transfer_syntaxes(tmp_path):
    """A PACS that compressed part of a series later (or received it from two sources) holds a mix."""
    names = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm", "MR_small_jpeg_ls_lossless.dcm",
             "MR_small.dcm"]
    build_dicom.write_stack_of([vendor(n) for n in names], tmp_path / "mixed", 2.0, STUDY, "mixed", 1)
    series = read_series_folder(tmp_path / "mixed")
    assert len(series.transfer_syntaxes) == 5
    image = series.to_sitk()
    _assert_gdcm_geometry(image, tmp_path / "mixed")
    assert all(np.array_equal(slice_, _mr_small_pixels()) for slice_ in _voxels(image))


# -- the asymmetric oblique phantom, compressed here ---------------------------------------------------

# OpenJPEG's encoder (six wavelet levels) needs 32 pixels or more on each side of a frame.
SHAPE = (48, 40, 12)


def _oblique_image() -> sitk.Image:
    values = np.round(asymmetric_array(SHAPE) * 10).astype(np.int16)  # up to ~16,000: fits 16 bits signed
    image = sitk.GetImageFromArray(values.transpose(2, 1, 0))
    image.SetSpacing((0.7, 0.9, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection(OBLIQUE_AXIAL_DIRECTION)
    return image


@pytest.fixture(scope="module")
def plain_series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plain") / "series"
    build_dicom.write_series(_oblique_image(), folder, "CT", "oblique", STUDY, 1)
    return folder


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_lossless_copies_give_back_every_voxel_in_the_series_geometry(plain_series, syntax, tmp_path):
    build_dicom.write_transcoded_copy(plain_series, tmp_path / "copy", syntax, f"copy {syntax}", 2)
    assert {pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID
            for f in (tmp_path / "copy").iterdir()} == {syntax}
    image = read_series_folder(tmp_path / "copy").to_sitk()
    _assert_gdcm_geometry(image, tmp_path / "copy")
    original = _oblique_image()
    assert image.GetSize() == SHAPE
    assert np.allclose(image.GetSpacing(), original.GetSpacing(), atol=1e-5)
    assert np.allclose(image.GetOrigin(), original.GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetDirection(), original.GetDirection(), atol=1e-5)
    assert np.array_equal(_voxels(image), _voxels(original))


def test_lossy_jpeg2000_keeps_the_geometry_and_stays_close(plain_series, tmp_path):
    build_dicom.write_transcoded_copy(plain_series, tmp_path / "lossy", JPEG2000, "lossy", 3, jpeg2000_ratio=8)
    header = pydicom.dcmread(str(next((tmp_path / "lossy").iterdir())), stop_before_pixels=True)
    assert header.LossyImageCompression == "01"
    image = read_series_folder(tmp_path / "lossy").to_sitk()
    _assert_gdcm_geometry(image, tmp_path / "lossy")
    original = _voxels(_oblique_image()).astype(float)
    error = np.abs(_voxels(image) - original)
    assert 0 < error.max() < 0.05 * np.ptp(original)  # lossy, but no flip or shift: that would be ~100 %
    assert error.mean() < 0.005 * np.ptp(original)


def _truncate_frame(path: Path) -> None:
    dataset = pydicom.dcmread(str(path))
    frame = next(generate_pixel_data_frame(dataset.PixelData))
    dataset.PixelData = encapsulate([frame[: len(frame) // 3]])
    dataset.save_as(path, write_like_original=True)


def test_an_undecodable_slice_is_named_with_its_transfer_syntax(plain_series, tmp_path):
    build_dicom.write_transcoded_copy(plain_series, tmp_path / "broken", JPEG2000Lossless, "broken", 4)
    _truncate_frame(tmp_path / "broken" / "0003.dcm")
    series = read_series_folder(tmp_path / "broken")  # the headers are fine: only decoding fails
    with pytest.raises(DicomSeriesError) as error:
        series.to_sitk()
    message = str(error.value)
    assert "slice 3 of 12" in message and series.sop_instance_uids[2] in message
    assert "stored as JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90), cannot be decoded" in message
    assert error.value.status == 422


# -- what is refused ------------------------------------------------------------------------------------

@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_enhanced_multiframe_is_refused_with_the_reason(modality, tmp_path):
    build_dicom.write_series(_oblique_image(), tmp_path / "single", modality, "single", STUDY, 1)
    build_dicom.write_enhanced_copy(tmp_path / "single", tmp_path / "enhanced", "enhanced", 2)
    with pytest.raises(DicomSeriesError, match=rf"enhanced multi-frame {modality} is not supported: it is stored as 1 "
                                               rf"Legacy Converted Enhanced {modality} Image Storage instance\(s\) "
                                               r"\(12 frame\(s\) in the first\)"):
        read_series_folder(tmp_path / "enhanced")


def test_an_enhanced_ct_is_refused_by_its_sop_class_name(plain_series, tmp_path):
    build_dicom.write_enhanced_copy(plain_series, tmp_path / "enhanced", "enhanced", 2)
    path = tmp_path / "enhanced" / "enhanced.dcm"
    dataset = pydicom.dcmread(str(path))
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    dataset.save_as(path)
    with pytest.raises(DicomSeriesError, match=r"as 1 Enhanced CT Image Storage instance"):
        read_series_folder(tmp_path / "enhanced")


def test_colour_images_are_refused(tmp_path):
    with pytest.raises(DicomSeriesError, match=r"holds colour images \(3 samples per pixel, RGB\)"):
        read_series_folder(_with_geometry(vendor("SC_rgb_rle.dcm"), tmp_path / "rgb"))


# -- DICOM SEG over a compressed series -----------------------------------------------------------------

def test_seg_round_trip_over_a_jpeg2000_series(plain_series, tmp_path):
    build_dicom.write_transcoded_copy(plain_series, tmp_path / "j2k", JPEG2000Lossless, "j2k", 5)
    series = read_series_folder(tmp_path / "j2k")
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[3:12, 4:9, 2:5] = 1
    label[30:38, 20:28, 9] = 2
    author = SegmentationAuthor("MedicoSAM", "tiny xxh128:0123", "MedicoSAM Label test")
    seg = label_to_seg(label, series, {1: "liver"}, author)
    assert [str(s.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence] \
        == series.sop_instance_uids
    assert np.array_equal(seg_to_label(seg, series), label)


# -- the download asks for the stored syntax -------------------------------------------------------------

class _FakePacs:
    """Answers iter_series like DICOMwebClient, from files; records what was asked for."""

    def __init__(self, files: List[Path], broken_after: int = -1) -> None:
        self.files, self.broken_after, self.asked = files, broken_after, []

    def iter_series(self, study_uid, series_uid, media_types=None):
        self.asked.append(media_types)
        for n, path in enumerate(self.files):
            if n == self.broken_after:
                raise pydicom.errors.InvalidDicomError("File is missing DICOM File Meta Information header")
            yield pydicom.dcmread(str(path))


def test_download_asks_for_the_stored_transfer_syntax_and_keeps_it(plain_series, tmp_path):
    build_dicom.write_transcoded_copy(plain_series, tmp_path / "j2k", JPEG2000Lossless, "j2k", 6)
    files = sorted((tmp_path / "j2k").iterdir())
    pacs = _FakePacs(files)
    assert download_series(pacs, "1.2", "1.2.3", tmp_path / "download") == 12
    assert pacs.asked == [STORED_TRANSFER_SYNTAX] == [(("application/dicom", "*"),)]
    written = sorted((tmp_path / "download").iterdir())
    assert [p.name for p in written[:2]] == ["00001.dcm", "00002.dcm"]
    for sent, kept in zip(files, written):
        sent, kept = pydicom.dcmread(str(sent)), pydicom.dcmread(str(kept))
        assert kept.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert kept.PixelData == sent.PixelData  # the codestream itself, not re-encoded


def test_download_of_a_part_that_is_not_dicom_says_which(plain_series, tmp_path):
    pacs = _FakePacs(sorted(plain_series.iterdir()), broken_after=4)
    with pytest.raises(PacsContentError, match="instance 5 of series 1.2.3 sent by the PACS is not readable DICOM"):
        download_series(pacs, "1.2", "1.2.3", tmp_path / "download")
