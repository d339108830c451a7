"""One image model, three shapes: a 2D plane, 2D + time and a 3D volume, read from DICOM, PNG/JPEG/TIFF and NIfTI.

The rule every test here checks: the same pixels stored two ways give the same voxels and the same mask for the
same click (MONOCHROME1 against MONOCHROME2 of the inverted values, planar against interleaved RGB, a DICOM
secondary capture against a PNG, an enhanced MR against its classic series). Pictures are asymmetric, so a
transpose or flip of rows, columns or frames cannot pass, and clicks are checked down to the SAM point.
"""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image

from conftest import ModelsDouble
from dicom_test_files import pydicom_file
from conftest import requested
from medicosam_app.dicom.image import frame_time_ms, projection_spacing, read_dicom_files
from medicosam_app.embeddings.intensity import IntensityPolicy
from medicosam_app.embeddings.memory_cache import EmbeddingCache
from medicosam_app.embeddings.slice_embedder import SliceEmbedder
from medicosam_app.errors import ImageReadError, InvalidRequestError
from medicosam_app.geometry.volume import read_volume, write_image
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter
from medicosam_app.model.provider import ModelProvider
from projection_files import asymmetric_picture, write_dicom
from predictor_doubles import RecordingPredictorDouble, SquarePredictorDouble


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def tiny_sam(tiny_checkpoint):
    return ModelProvider(str(tiny_checkpoint), allow_download=False)


def _click_mask(models, path, params):
    return InteractiveSegmenter(models, embeddings=EmbeddingCache()).segment(path, requested(params), ClickContext("x")).label


# -- a 2D plane -----------------------------------------------------------------------------------------


def test_a_radiograph_is_a_plane_whose_voxel_ij_is_its_column_and_row(tmp_path):
    picture = asymmetric_picture(30, 45)
    volume = read_volume(write_dicom(tmp_path / "cr.dcm", picture, "CR"))
    assert volume.layout == "plane" and volume.shape == (45, 30, 1) and not volume.is_colour
    np.testing.assert_array_equal(volume.array[:, :, 0], picture.T)  # [i, j] = [column, row]
    view = volume.view(2)
    np.testing.assert_array_equal(view.extract(volume.array, 0), picture)  # shown to SAM as stored
    double = RecordingPredictorDouble()
    result = InteractiveSegmenter(ModelsDouble(double), embeddings=EmbeddingCache()).segment(
        tmp_path / "cr.dcm", requested({"foreground": [[40, 5, 0]]}), ClickContext("cr"))
    assert double.calls[0]["points"].tolist() == [[40, 5]]  # (x, y) = (column, row) = (i, j)
    assert result.label.shape == (45, 30, 1) and result.label[40, 5, 0] == 1
    assert double.encoded[0].shape == (30, 45, 3)  # rows x columns, grey replicated


def test_a_plane_or_clip_is_cut_along_k_only(tmp_path):
    volume = read_volume(write_dicom(tmp_path / "cr.dcm", asymmetric_picture(), "CR"))
    with pytest.raises(InvalidRequestError, match="a 2D image: it has images along axis 2"):
        volume.view(0)


def test_monochrome1_gives_the_same_voxels_and_mask_as_monochrome2_of_the_inverted_values(tmp_path, tiny_sam):
    picture = asymmetric_picture(40, 56)
    one = write_dicom(tmp_path / "mono1" / "cr.dcm", 4095 - picture, "CR", "MONOCHROME1")
    two = write_dicom(tmp_path / "mono2" / "cr.dcm", picture, "CR", "MONOCHROME2")
    a, b = read_volume(one), read_volume(two)
    np.testing.assert_allclose(a.array, b.array)
    assert a.array[30, 5, 0] > a.array[2, 2, 0]  # bright stays bright: the disc is where MONOCHROME2 is high
    click = {"foreground": [[33, 12, 0]]}
    np.testing.assert_array_equal(_click_mask(tiny_sam, one, click), _click_mask(tiny_sam, two, click))


def test_planar_interleaved_rgb_and_a_png_of_the_same_pixels_give_the_same_image_and_mask(tmp_path, tiny_sam):
    picture = asymmetric_picture(36, 50, colour=True)
    interleaved = write_dicom(tmp_path / "a" / "sc.dcm", picture, "OT", planar=0)
    planar = write_dicom(tmp_path / "b" / "sc.dcm", picture, "OT", planar=1)
    png = tmp_path / "photo.png"
    Image.fromarray(picture).save(png)
    volumes = [read_volume(p) for p in (interleaved, planar, png)]
    for volume in volumes:
        assert volume.layout == "plane" and volume.is_colour and volume.array.shape == (50, 36, 1, 3)
        np.testing.assert_array_equal(volume.array[:, :, 0, :], picture.transpose(1, 0, 2))
    click = {"foreground": [[31, 9, 0]]}
    masks = [_click_mask(tiny_sam, p, click) for p in (interleaved, planar, png)]
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


def test_colour_reaches_the_encoder_as_colour_each_channel_scaled_on_its_own(tmp_path):
    picture = asymmetric_picture(20, 24, colour=True)
    png = tmp_path / "photo.png"
    Image.fromarray(picture).save(png)
    volume = read_volume(png)
    rgb = SliceEmbedder(ModelsDouble(RecordingPredictorDouble())).slice_rgb(volume, volume.view(2), 0)
    assert rgb.shape == (20, 24, 3)
    for channel in range(3):  # min-max per channel, micro-sam's _to_image
        values = picture[..., channel].astype(float)
        expected = np.round((values - values.min()) * 255 / (values.max() - values.min()))
        np.testing.assert_array_equal(rgb[..., channel], expected)
    assert not np.array_equal(rgb[..., 0], rgb[..., 1])  # never collapsed to grey
    with pytest.raises(InvalidRequestError, match="in colour, and a CT window"):
        SliceEmbedder(ModelsDouble(RecordingPredictorDouble()), IntensityPolicy("window")).slice_rgb(
            volume, volume.view(2), 0)


def test_real_colour_and_radiograph_files_are_read_as_pictures():
    ultrasound = read_volume(pydicom_file("US1_UNCR.dcm"))  # RGB ultrasound, one frame
    assert ultrasound.layout == "plane" and ultrasound.array.shape == (640, 480, 1, 3)
    radiograph = read_volume(pydicom_file("RG1_UNCR.dcm"))  # CR, MONOCHROME1, JPEG 2000 sibling tested in pixels
    assert radiograph.layout == "plane" and radiograph.shape == (1841, 1955, 1)
    palette = read_volume(pydicom_file("OBXXXX1A_2frame.dcm"))  # palette-colour ultrasound, 2 frames
    assert palette.layout == "cine" and palette.array.shape == (800, 600, 2, 3)
    assert np.allclose(palette.spacing[:2], 0.262, atol=1e-3)  # from the ultrasound region calibration


# -- 2D + time ------------------------------------------------------------------------------------------


def test_an_ultrasound_clip_is_frames_along_k_with_its_frame_time(tmp_path):
    clip = asymmetric_picture(30, 40, frames=6, colour=True)
    path = write_dicom(tmp_path / "us.dcm", clip, "US", frames=True, FrameTime=40.0, planar=1,
                       FrameIncrementPointer=0x00181063)
    volume = read_volume(path)
    assert volume.layout == "cine" and volume.frame_time_ms == 40.0 and volume.frame_name == "frame"
    assert volume.array.shape == (40, 30, 6, 3)
    np.testing.assert_array_equal(volume.array[:, :, 4, :], clip[4].transpose(1, 0, 2))


def test_a_box_on_one_frame_follows_through_the_clip_both_ways(tmp_path):
    clip = asymmetric_picture(30, 40, frames=8)
    path = write_dicom(tmp_path / "xa.dcm", clip, "XA", frames=True, FrameTime=66.7)
    models = ModelsDouble(SquarePredictorDouble())
    outcome = VolumeSegmenter(models, SliceEmbedder(models)).segment(
        path, requested({"roi": [20, 28, 8, 16, 3, 3]}), ClickContext("xa"))
    assert outcome.result.prompted_slices == [3] and outcome.result.slice_range == (0, 7)
    assert set(outcome.result.predicted_iou) == set(range(8))  # one predicted IoU per frame: drift is visible
    assert outcome.label.shape == (40, 30, 8) and all(outcome.label[24, 12, k] for k in range(8))


def test_the_frame_time_comes_from_frame_time_its_vector_or_the_cine_rate():
    ds = pydicom.Dataset()
    assert frame_time_ms(ds) is None
    ds.FrameTimeVector = [0, 30, 34, 32]
    assert frame_time_ms(ds) == pytest.approx(32.0)
    ds.CineRate = 25
    assert frame_time_ms(ds) == pytest.approx(32.0)  # the vector is what was measured
    del ds.FrameTimeVector
    assert frame_time_ms(ds) == pytest.approx(40.0)


# -- spacing of projection images -------------------------------------------------------------------------


def test_projection_spacing_prefers_calibrated_then_detector_over_magnification_then_ultrasound_regions():
    ds = pydicom.Dataset()
    ds.PixelSpacing = [0, 0]  # real NEMA files carry 0.000\0.000: no calibration
    ds.ImagerPixelSpacing = [0.2, 0.15]  # row spacing, column spacing
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    assert projection_spacing(ds)[0] == pytest.approx((0.12, 0.16))
    ds.PixelSpacing = [0.14, 0.11]
    assert projection_spacing(ds) == ((0.11, 0.14), "PixelSpacing")
    us = pydicom.Dataset()
    small, large = pydicom.Dataset(), pydicom.Dataset()
    for region, (x1, delta) in ((small, (10, 0.5)), (large, (300, 0.03))):
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
        region.PhysicalDeltaX, region.PhysicalDeltaY = delta, delta * 2
        region.RegionLocationMinX0 = region.RegionLocationMinY0 = 0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1, 200
    us.SequenceOfUltrasoundRegions = [small, large]
    assert projection_spacing(us) == (pytest.approx((0.3, 0.6)), "ultrasound region calibration")
    assert projection_spacing(pydicom.Dataset())[0] == (1.0, 1.0)


def test_a_label_on_a_radiograph_is_written_with_its_spacing(tmp_path):
    path = write_dicom(tmp_path / "dx.dcm", asymmetric_picture(), "DX", ImagerPixelSpacing=[0.2, 0.1])
    volume = read_volume(path)
    assert volume.spacing[:2] == pytest.approx((0.1, 0.2))
    from medicosam_app.geometry.volume import write_label

    written = sitk.ReadImage(str(write_label(np.zeros(volume.shape, np.uint8), volume, directory=tmp_path)))
    assert written.GetSpacing()[:2] == pytest.approx((0.1, 0.2)) and written.GetSize()[:2] == (45, 30)


# -- several pictures in one series, and bad input -----------------------------------------------------------


def test_pictures_of_one_series_form_a_stack_in_instance_order_and_different_sizes_are_refused(tmp_path):
    uid = pydicom.uid.generate_uid()
    lateral, frontal = asymmetric_picture(seed=1), asymmetric_picture(seed=2)
    files = [write_dicom(tmp_path / "a.dcm", lateral, "CR", series_uid=uid, instance=2),
             write_dicom(tmp_path / "b.dcm", frontal, "CR", series_uid=uid, instance=1)]
    stack = read_volume(tmp_path)
    assert stack.layout == "stack" and stack.shape == (45, 30, 2)
    np.testing.assert_array_equal(stack.array[:, :, 0], frontal.T)  # instance 1 first
    models = ModelsDouble(SquarePredictorDouble())
    with pytest.raises(InvalidRequestError, match="stack of 2 separate 2D pictures"):
        VolumeSegmenter(models, SliceEmbedder(models)).segment(tmp_path, requested({"foreground": [[5, 5, 0]]}), ClickContext("s"))
    write_dicom(tmp_path / "c.dcm", asymmetric_picture(20, 20), "CR", series_uid=uid, instance=3)
    with pytest.raises(ImageReadError, match="3 separate 2D images of different sizes"):
        read_volume(tmp_path)
    assert files


@pytest.mark.parametrize("change,message", [
    (dict(PhotometricInterpretation="CMYK"), "photometric interpretation 'CMYK'"),
    (dict(NumberOfFrames=3), "cannot be decoded"),  # the frame count does not match the pixel data
    (dict(Rows=0), "holds no picture"),
])
def test_headers_that_cannot_be_honoured_are_refused_with_what_to_do(tmp_path, change, message):
    path = write_dicom(tmp_path / "bad.dcm", asymmetric_picture(), "CR", **change)
    with pytest.raises(ImageReadError, match=message):
        read_volume(path)


def test_a_tiled_whole_slide_image_is_refused_not_shown_as_a_clip_of_tiles(tmp_path):
    tiles = asymmetric_picture(16, 16, frames=4, colour=True)
    path = write_dicom(tmp_path / "sm.dcm", tiles, "SM", frames=True, TotalPixelMatrixColumns=32,
                       TotalPixelMatrixRows=32)
    with pytest.raises(ImageReadError, match="tiled whole-slide image .32 x 32 pixels in 4 tiles"):
        read_volume(path)


def test_a_secondary_capture_with_float_colour_or_32_bit_samples_is_refused():
    with pytest.raises(ImageReadError, match="32 bits per sample"):
        read_dicom_files([pydicom_file("SC_rgb_32bit.dcm")])


# -- files: PNG, JPEG, TIFF ---------------------------------------------------------------------------------


def test_tiff_files_keep_16_bits_channels_and_stacks(tmp_path):
    grey = asymmetric_picture(24, 32)
    tifffile.imwrite(tmp_path / "grey16.tif", grey)
    volume = read_volume(tmp_path / "grey16.tif")
    assert volume.layout == "plane" and volume.array.dtype == np.uint16
    np.testing.assert_array_equal(volume.array[:, :, 0], grey.T)

    nuclear, membrane = asymmetric_picture(24, 32, seed=4), asymmetric_picture(24, 32, seed=5) // 2
    tifffile.imwrite(tmp_path / "cells.tif", np.stack([nuclear, membrane]), metadata={"axes": "CYX"})
    cells = read_volume(tmp_path / "cells.tif")
    assert cells.array.shape == (32, 24, 1, 3)  # CellSAM's input: blank, nuclear, membrane
    assert not cells.array[..., 0].any()
    np.testing.assert_array_equal(cells.array[:, :, 0, 1], nuclear.T)
    np.testing.assert_array_equal(cells.array[:, :, 0, 2], membrane.T)

    clip = asymmetric_picture(24, 32, frames=5)
    tifffile.imwrite(tmp_path / "clip.tif", clip, imagej=True, metadata={"axes": "TYX"})
    assert read_volume(tmp_path / "clip.tif").layout == "cine"
    tifffile.imwrite(tmp_path / "many.tif", np.zeros((5, 24, 32), np.uint8), metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError, match="5 channels"):
        read_volume(tmp_path / "many.tif")


def test_a_converted_clip_keeps_its_layout_frame_time_and_colour(tmp_path):
    clip = asymmetric_picture(30, 40, frames=4, colour=True)
    original = read_volume(write_dicom(tmp_path / "us.dcm", clip, "US", frames=True, FrameTime=25.0))
    converted = read_volume(write_image(original, tmp_path / "us.nrrd"))
    assert (converted.layout, converted.frame_time_ms) == ("cine", 25.0)
    np.testing.assert_array_equal(converted.array, original.array)
    assert converted.content_hash == original.content_hash  # embeddings made before the conversion still count


def test_evaluate_finetune_and_retrain_read_a_folder_of_photographs_with_mask_images(tmp_path, tiny256_checkpoint):
    """MedicoSAM's 2D evaluation sets are pictures with mask pictures (0/255): the command-line tools read them
    from a datastore folder as they read volumes, the class named by its mask value."""
    from medicosam_app.cli import main

    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for n in range(3):
        Image.fromarray(asymmetric_picture(60, 80, colour=True, seed=n)).save(studies / f"derm_{n}.png")
        mask = np.zeros((60, 80), np.uint8)
        mask[10 + n:30, 40:60 + n] = 255
        Image.fromarray(mask).save(studies / "labels" / "final" / f"derm_{n}.png")
    common = ["--studies", str(studies), "--checkpoint", str(tiny256_checkpoint), "--cache-dir", str(tmp_path / "c"),
              "--precision", "fp32", "--labels", '{"lesion": 255}', "--quiet"]
    # A server-wide slicing axis (here i) applies to volumes; pictures are cut along k whatever it says. Pictures have
    # no neighbours to propagate to: no "3D" figures, even without --no-3d.
    assert main(["evaluate", *common, "--iterations", "2", "--slice-axis", "0",
                 "--json", str(tmp_path / "run.json")]) == 0
    import json

    run = json.loads((tmp_path / "run.json").read_text())
    assert run["images"] == ["derm_0", "derm_1", "derm_2"]
    assert {o["class_name"] for o in run["objects"]} == {"lesion"} and run["summary"]["box"]["2d"]["objects"] == 3
    assert run["summary"]["box"]["3d"]["objects"] == 0 and {o["dimension"] for o in run["objects"]} == {"2d"}
    assert main(["retrain", *common, "--epochs", "1", "--force", "--initial-features", "8"]) == 0
    assert (tmp_path / "c" / "semantic" / "versions" / "v0001").is_dir()
    assert main(["finetune", *common, "--epochs", "1"]) == 0
    assert (tmp_path / "c" / "interactive" / "versions" / "v0001").is_dir()


def _functional_groups(frames: int, positions: bool) -> dict:
    """Shared and per-frame functional groups as an enhanced XA clip (no positions) or a placed stack has them."""
    shared, measures = pydicom.Dataset(), pydicom.Dataset()
    measures.PixelSpacing = [0.3, 0.2]
    shared.PixelMeasuresSequence = [measures]
    items = []
    for n in range(frames):
        item, content = pydicom.Dataset(), pydicom.Dataset()
        content.FrameAcquisitionNumber = n + 1
        item.FrameContentSequence = [content]
        if positions:
            position = pydicom.Dataset()
            position.ImagePositionPatient = [0.0, 0.0, 2.0 * n]
            item.PlanePositionSequence = [position]
        items.append(item)
    return {"SharedFunctionalGroupsSequence": [shared], "PerFrameFunctionalGroupsSequence": items}


def test_an_enhanced_xa_clip_is_a_clip_with_its_pixel_spacing_and_no_seg_is_attempted(tmp_path):
    from medicosam_app.dicom.seg import seg_unsupported

    path = write_dicom(tmp_path / "xa.dcm", asymmetric_picture(frames=4), "XA", frames=True,
                       FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.3", **_functional_groups(4, positions=False))
    image = read_dicom_files([path])
    assert image.layout == "cine" and image.spacing[:2] == pytest.approx((0.2, 0.3))
    assert "frames of a clip" in seg_unsupported(image.datasets(), 4)


def test_a_series_mixing_grey_and_colour_or_holding_a_non_image_is_refused(tmp_path):
    uid = pydicom.uid.generate_uid()
    write_dicom(tmp_path / "grey.dcm", asymmetric_picture(), "OT", series_uid=uid, instance=1)
    write_dicom(tmp_path / "rgb.dcm", asymmetric_picture(colour=True), "OT", series_uid=uid, instance=2)
    with pytest.raises(ImageReadError, match="mixes greyscale and colour"):
        read_volume(tmp_path)
    (tmp_path / "rgb.dcm").unlink()
    odd = pydicom.dcmread(str(tmp_path / "grey.dcm"))
    del odd.Rows
    odd.SOPInstanceUID = pydicom.uid.generate_uid()
    odd.save_as(str(tmp_path / "odd.dcm"))
    with pytest.raises(ImageReadError, match="1 of 2 instances .odd.dcm first. have no Rows"):
        read_volume(tmp_path)


def test_pictures_too_large_to_open_are_refused_before_they_are_unpacked(tmp_path):
    Image.new("1", (21000, 21000)).save(tmp_path / "huge.png")  # a few kB on disk, 441 M pixels: Pillow's limit
    with pytest.raises(ImageReadError, match="huge.png is too large to open"):
        read_volume(tmp_path / "huge.png")
    Image.new("RGB", (12000, 12000)).save(tmp_path / "wide.png")  # 144 M pixels but 432 M values: our limit
    with pytest.raises(ImageReadError, match=r"12000 x 12000 pixels \(R\+G\+B\), more than 400,000,000 values"):
        read_volume(tmp_path / "wide.png")


def test_label_pictures_give_class_numbers_not_colours(tmp_path):
    from medicosam_app.geometry.volume import read_label

    classes = np.zeros((20, 30), np.uint8)
    classes[2:8, 3:12], classes[10:15, 20:28] = 1, 2
    palette = Image.fromarray(classes, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_label(tmp_path / "voc.png").array[:, :, 0], classes.T)
    assert read_volume(tmp_path / "voc.png").is_colour  # as an image, the palette is looked up
    Image.fromarray(np.repeat((classes * 127)[..., None], 3, axis=2)).save(tmp_path / "rgb_mask.png")
    np.testing.assert_array_equal(read_label(tmp_path / "rgb_mask.png").array[:, :, 0], (classes * 127).T)
    Image.fromarray(asymmetric_picture(20, 30, colour=True)).save(tmp_path / "photo.png")
    with pytest.raises(ImageReadError, match="colour image, not a label map"):
        read_label(tmp_path / "photo.png")


def test_the_alpha_of_a_grey_tiff_is_not_a_channel(tmp_path):
    grey = (asymmetric_picture(24, 32) // 16).astype(np.uint8)
    with_alpha = np.stack([grey, np.full_like(grey, 255)], axis=-1)
    tifffile.imwrite(tmp_path / "la.tif", with_alpha, photometric="minisblack", extrasamples=["unassalpha"])
    volume = read_volume(tmp_path / "la.tif")
    assert not volume.is_colour
    np.testing.assert_array_equal(volume.array[:, :, 0], grey.T)
