"""Stored DICOM pixels → what a viewer shows (dicom/pixels.py): same picture however the pixels are stored.

Pairs of pydicom's own test files hold the same picture stored two ways (compressed and not, planar and
interleaved, YBR JPEG and the RGB that DCMTK decompressed it to); each pair must present identically, which
also proves YBR is converted exactly once. Hand-made asymmetric images check that rows, columns and
channels are never swapped, and MONOCHROME1 against MONOCHROME2 of the inverted values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_test_files import read_test_file
from medicosam_app.dicom.pixels import PixelDataError, presented_frames

SAME_PICTURE = [
    ("RG1_UNCR.dcm", "RG1_J2KR.dcm"),  # CR MONOCHROME1, JPEG 2000 lossless
    ("RG3_UNCI.dcm", "RG3_J2KI.dcm"),
    ("US1_UNCR.dcm", "US1_J2KR.dcm"),  # colour ultrasound, YBR_RCT
    ("US1_UNCI.dcm", "US1_J2KI.dcm"),  # YBR_ICT
    ("color-pl.dcm", "color-px.dcm"),  # planar configuration 1 against 0
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_ebcynp_dcmd.dcm"),  # YBR_FULL_422 JPEG against its RGB
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_ebcyn1_dcmd.dcm"),  # YBR_FULL JPEG
    ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_ebcr_dcmd.dcm"),  # RGB JPEG
    ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),  # palette colour ultrasound, RLE
    ("SC_rgb_rle_2frame.dcm", "SC_rgb_2frame.dcm"),  # multi-frame colour
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),  # JPEG-LS (GDCM), 10 frames
]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the odd padding of some test files
        yield


@pytest.mark.parametrize("first,second", SAME_PICTURE)
def test_the_same_picture_stored_two_ways_is_presented_the_same(first, second):
    a, b = presented_frames(read_test_file(first)), presented_frames(read_test_file(second))
    assert a.colour == b.colour
    assert a.frames.shape == b.frames.shape
    np.testing.assert_array_equal(a.frames, b.frames)


def test_ybr_full_is_converted_to_rgb_once():
    ybr = presented_frames(read_test_file("SC_ybr_full_uncompressed.dcm"))
    rgb = presented_frames(read_test_file("SC_rgb.dcm"))
    assert ybr.steps == ("YBR_FULL to RGB",) and rgb.steps == ("RGB",)
    # The same red/green/blue bars; YCbCr rounding moves values by a few levels, a second conversion by 100s.
    assert np.abs(ybr.frames.astype(int) - rgb.frames.astype(int)).max() <= 8


def test_a_radiograph_stored_monochrome1_is_inverted_and_windowed():
    shown = presented_frames(read_test_file("RG1_UNCR.dcm"))
    assert shown.colour is False and shown.frames.shape == (1, 1955, 1841)
    assert shown.steps == ("rescale 1x+0", "window (first, linear)", "MONOCHROME1 inverted")


def _grey(pixels: np.ndarray, photometric: str, **attributes) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def _asymmetric(rows: int = 5, columns: int = 7) -> np.ndarray:
    """Values that differ along rows, columns and both diagonals: no flip or transpose keeps them."""
    r, c = np.mgrid[0:rows, 0:columns]
    return (r * 300 + c * 17 + (r * c) % 5).astype(np.uint16)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", None])
def test_monochrome1_gives_what_monochrome2_of_the_inverted_values_gives(function):
    stored = _asymmetric()
    top = 2**12 - 1
    window = dict(WindowCenter=1000, WindowWidth=800) if function else {}
    mirrored = dict(WindowCenter=top - 1000, WindowWidth=800) if function else {}
    if function:
        window["VOILUTFunction"] = mirrored["VOILUTFunction"] = function
    one = presented_frames(_grey(stored, "MONOCHROME1", **window))
    two = presented_frames(_grey(top - stored, "MONOCHROME2", **mirrored))
    np.testing.assert_allclose(one.frames, two.frames, atol=1e-3)
    assert one.frames[0, 0, 0] > one.frames[0, -1, -1]  # the lowest stored value is the brightest in MONOCHROME1


def test_presentation_lut_shape_inverse_inverts_a_monochrome2_image_once():
    stored = _asymmetric()
    plain = presented_frames(_grey(stored, "MONOCHROME2")).frames
    inverse = presented_frames(_grey(stored, "MONOCHROME2", PresentationLUTShape="INVERSE")).frames
    np.testing.assert_allclose(inverse, (2**12 - 1) - plain)
    # A MONOCHROME1 radiograph carries INVERSE too (PS3.3 C.8.11.6): still one inversion, not two.
    both = presented_frames(_grey(stored, "MONOCHROME1", PresentationLUTShape="INVERSE")).frames
    np.testing.assert_allclose(both, inverse)


def test_frames_rows_and_columns_keep_their_order():
    stored = np.stack([_asymmetric(), _asymmetric() + 1000])
    shown = presented_frames(_grey(stored, "MONOCHROME2", RescaleSlope=2, RescaleIntercept=-5)).frames
    assert shown.shape == (2, 5, 7)
    np.testing.assert_allclose(shown, stored * 2.0 - 5)


def test_a_window_of_width_zero_is_ignored_not_divided_by():
    shown = presented_frames(_grey(_asymmetric(), "MONOCHROME2", WindowCenter=100, WindowWidth=0))
    assert not any(step.startswith("window") for step in shown.steps)
    np.testing.assert_allclose(shown.frames[0], _asymmetric())


def _rgb(planes: np.ndarray, planar: int) -> Dataset:
    """``planes`` is (rows, columns, 3); stored interleaved (0) or as three planes (1)."""
    ds = _grey(planes[..., 0], "RGB")
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, planar
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    data = planes.transpose(2, 0, 1) if planar else planes
    ds.PixelData = np.ascontiguousarray(data).astype(np.uint8).tobytes()
    return ds


def test_planar_and_interleaved_rgb_give_the_same_channels_in_place():
    picture = np.stack([_asymmetric() % 256, (_asymmetric() // 3) % 256, np.full((5, 7), 9)], axis=-1)
    for planar in (0, 1):
        shown = presented_frames(_rgb(picture.astype(np.uint8), planar))
        assert shown.colour and shown.frames.shape == (1, 5, 7, 3)
        np.testing.assert_array_equal(shown.frames[0], picture)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(PhotometricInterpretation="CMYK"), "photometric interpretation 'CMYK'"),
        (dict(PhotometricInterpretation="YBR_PARTIAL_420"), "YBR_PARTIAL_420"),
        (dict(SamplesPerPixel=3), "3 samples per pixel instead of 1"),
        (dict(NumberOfFrames=4), "cannot be decoded"),  # the frame count does not match the pixel data
    ],
)
def test_headers_that_contradict_or_cannot_be_shown_are_refused_with_the_reason(change, message):
    ds = _grey(_asymmetric(), "MONOCHROME2")
    for key, value in change.items():
        setattr(ds, key, value)
    with pytest.raises(PixelDataError, match=message):
        presented_frames(ds)


def test_damaged_and_unshowable_test_files_are_refused_not_crashed():
    with pytest.raises(PixelDataError, match="cannot be decoded"):
        presented_frames(read_test_file("MR_truncated.dcm"))
    with pytest.raises(PixelDataError, match="32 bits per sample"):
        presented_frames(read_test_file("SC_rgb_32bit.dcm"))
    no_pixels = _grey(_asymmetric(), "MONOCHROME2")
    del no_pixels.PixelData
    with pytest.raises(PixelDataError, match="no pixel data"):
        presented_frames(no_pixels)


def test_palette_colour_and_voi_lut_files_are_looked_up():
    palette = presented_frames(read_test_file("OBXXXX1A_2frame.dcm"))
    assert palette.colour and palette.frames.shape == (2, 600, 800, 3) and palette.steps == ("palette colour",)
    voi = presented_frames(read_test_file("vlut_04.dcm"))
    assert voi.steps[-1] == "VOI LUT (first)"
    lut = presented_frames(read_test_file("mlut_18.dcm"))
    assert lut.steps == ("modality LUT",)
