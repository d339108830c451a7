"""Enhanced multi-frame geometry: the same slices as a classic series and as one shuffled enhanced instance
must give the same volume; instances that are not one volume are refused with the reason."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import data_store
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from highdicom.legacy import LegacyConvertedEnhancedMRImage
from pydicom.dataset import Dataset

import build_dicom
from conftest import asymmetric_array
from medicosam_app.dicom.enhanced import enhanced_geometry, is_enhanced
from medicosam_app.dicom.series import DicomSeriesError, read_series_folder

SAMPLES = Path(os.path.dirname(data_store.__file__)) / "data"
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _rotation(degrees_x: float, degrees_z: float) -> np.ndarray:
    x, z = np.radians(degrees_x), np.radians(degrees_z)
    about_x = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    about_z = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return about_z @ about_x


def _classic_oblique_mr(folder: Path) -> Path:
    """12 slices of 40 × 30 voxels, 0.7 × 0.9 × 2.5 mm, tilted about two axes, values a gradient and a blob."""
    image = sitk.GetImageFromArray(np.round(asymmetric_array()).astype(np.int16).transpose(2, 1, 0))
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection(_rotation(20.0, 30.0).flatten().tolist())
    build_dicom.write_series(image, folder, "MR", "oblique", build_dicom.uid("enhanced-test"), 1)
    return folder


def _shuffled_enhanced(classic: Path, out: Path, permutation: np.ndarray) -> Path:
    """highdicom's legacy conversion of the series, its frames then stored in ``permutation`` order."""
    slices = [pydicom.dcmread(str(p)) for p in sorted(classic.glob("*.dcm"))]
    assert not any(is_enhanced(s) for s in slices)
    enhanced = LegacyConvertedEnhancedMRImage(
        legacy_datasets=slices, series_instance_uid=build_dicom.uid("enhanced-series"), series_number=2,
        sop_instance_uid=build_dicom.uid("enhanced-instance"), instance_number=1,
    )
    frames = enhanced.pixel_array
    items = list(enhanced.PerFrameFunctionalGroupsSequence)
    enhanced.PerFrameFunctionalGroupsSequence = [items[p] for p in permutation]
    enhanced.PixelData = np.ascontiguousarray(frames[permutation]).tobytes()
    enhanced.save_as(str(out), write_like_original=False)
    return out


def test_shuffled_enhanced_instance_gives_the_classic_series_volume(tmp_path):
    classic = _classic_oblique_mr(tmp_path / "classic")
    permutation = np.random.default_rng(5).permutation(12)
    assert not np.array_equal(permutation, np.arange(12)) and not np.array_equal(permutation, np.arange(12)[::-1])
    dataset = pydicom.dcmread(str(_shuffled_enhanced(classic, tmp_path / "enhanced.dcm", permutation)))

    geometry = enhanced_geometry(dataset, "enhanced.dcm")
    volume = dataset.pixel_array[list(geometry.frame_order)].transpose(2, 1, 0)  # [k, j, i] → [i, j, k]

    reference = read_series_folder(classic).to_sitk()  # GDCM, slices in series.py's order
    assert is_enhanced(dataset)
    assert volume.shape == (40, 30, 12)
    assert np.array_equal(volume, sitk.GetArrayFromImage(reference).transpose(2, 1, 0))
    assert np.array_equal(volume, np.round(asymmetric_array()).astype(np.int16))
    assert np.allclose(geometry.spacing, reference.GetSpacing(), atol=1e-5)
    assert np.allclose(geometry.origin, reference.GetOrigin(), atol=1e-4)
    assert np.allclose(geometry.direction, np.array(reference.GetDirection()).reshape(3, 3), atol=1e-5)
    # ...and both are the geometry the series was written with, not merely the same mistake twice.
    assert np.allclose(geometry.spacing, (0.7, 0.9, 2.5), atol=1e-5)
    assert np.allclose(geometry.origin, (10.0, -20.0, 30.0), atol=1e-4)
    assert np.allclose(geometry.direction, _rotation(20.0, 30.0), atol=1e-5)


def test_enhanced_ct_sample_is_read_in_slice_order():
    # pydicom-data's eCT_Supplemental.dcm: one stack (StackID 1) of 2 frames 10 mm apart, orientation
    # (-1, 0, 0 / 0, 1, 0) so the normal points to -z (feet). Frame 1 (z = -149) is first along the normal.
    dataset = pydicom.dcmread(str(SAMPLES / "eCT_Supplemental.dcm"), stop_before_pixels=True)
    geometry = enhanced_geometry(dataset)
    assert geometry.frame_order == (1, 0)
    assert np.allclose(geometry.spacing, (0.388672, 0.388672, 10.0))
    assert np.allclose(geometry.origin, (99.5, -301.5, -149.0))
    assert np.allclose(geometry.direction, [[-1, 0, 0], [0, 1, 0], [0, 0, -1]])


def test_enhanced_mr_sample_without_functional_groups_is_refused():
    # pydicom-data's emri_small.dcm is an Enhanced MR Image Storage instance of 10 frames whose functional
    # groups were stripped (no Shared/PerFrameFunctionalGroupsSequence, no positions anywhere): not a volume.
    dataset = pydicom.dcmread(str(SAMPLES / "emri_small.dcm"), stop_before_pixels=True)
    assert not is_enhanced(dataset)
    with pytest.raises(DicomSeriesError, match=r"10 frame\(s\) but 0 per-frame functional group item\(s\)"):
        enhanced_geometry(dataset, "emri_small.dcm")


def _sequence(**values) -> list:
    """A one-item sequence value: the item holds ``values``."""
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return [item]


def _synthetic(positions: Sequence[float], orientations: Optional[Sequence[Sequence[float]]] = None,
               stacks: Optional[Sequence[str]] = None, phases: Optional[Sequence[int]] = None) -> Dataset:
    """Headers of an axial enhanced instance with frames at ``positions`` (mm along z), no pixels."""
    dataset = Dataset()
    dataset.SeriesInstanceUID, dataset.SeriesDescription = "1.2.3.4", "synthetic"
    dataset.NumberOfFrames = len(positions)
    shared = Dataset()
    shared.PixelMeasuresSequence = _sequence(PixelSpacing=[0.9, 0.7], SliceThickness=2.0)
    shared.PlaneOrientationSequence = _sequence(ImageOrientationPatient=AXIAL)
    dataset.SharedFunctionalGroupsSequence = [shared]
    items = []
    for n, z in enumerate(positions):
        item = Dataset()
        item.PlanePositionSequence = _sequence(ImagePositionPatient=[5.0, -3.0, z])
        content = {"StackID": stacks[n]} if stacks else {}
        content.update({"TemporalPositionIndex": phases[n]} if phases else {})
        item.FrameContentSequence = _sequence(**content)
        if orientations:
            item.PlaneOrientationSequence = _sequence(ImageOrientationPatient=list(orientations[n]))
        items.append(item)
    dataset.PerFrameFunctionalGroupsSequence = items
    return dataset


def test_per_frame_groups_win_over_shared_ones():
    dataset = _synthetic([4.0, 0.0, 2.0])
    for item in dataset.PerFrameFunctionalGroupsSequence:
        item.PixelMeasuresSequence = _sequence(PixelSpacing=[0.5, 0.4])
    geometry = enhanced_geometry(dataset)
    assert geometry.frame_order == (1, 2, 0)
    assert np.allclose(geometry.spacing, (0.4, 0.5, 2.0))
    assert np.allclose(geometry.origin, (5.0, -3.0, 0.0))


def test_scanner_jitter_in_gaps_is_accepted():
    # Gaps of 6.96 to 7.07 mm, as on the real MR that highdicom's 1 % tolerance rejects.
    positions = np.cumsum([0.0, 7.0, 6.96, 7.07, 7.02, 6.98, 7.01])
    geometry = enhanced_geometry(_synthetic(positions))
    assert geometry.frame_order == tuple(range(7))
    assert geometry.spacing[2] == pytest.approx(positions[-1] / 6)


def test_mixed_orientations_are_refused():
    sagittal, coronal = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    with pytest.raises(DicomSeriesError, match="mixes 3 slice orientations in its 3 frames"):
        enhanced_geometry(_synthetic([0.0, 0.0, 0.0], orientations=[AXIAL, sagittal, coronal]))


def test_two_stacks_at_the_same_positions_are_refused():
    with pytest.raises(DicomSeriesError, match=r"holds 2 stacks \(StackID 1, 2\).*not yet offered as separate images"):
        enhanced_geometry(_synthetic([0.0, 2.0, 4.0, 0.0, 2.0, 4.0], stacks=["1", "1", "1", "2", "2", "2"]))


def test_two_temporal_positions_are_refused():
    with pytest.raises(DicomSeriesError, match=r"holds 2 temporal positions \(TemporalPositionIndex\).*single-phase"):
        enhanced_geometry(_synthetic([0.0, 2.0, 0.0, 2.0], phases=[1, 1, 2, 2]))


def test_phases_named_only_by_their_dimension_index_are_refused():
    dataset = _synthetic([0.0, 2.0, 0.0, 2.0, 0.0, 2.0])
    # Three cardiac phases of two slices, told apart only by the second dimension's index.
    dataset.DimensionIndexSequence = [
        _sequence(DimensionIndexPointer=pydicom.datadict.tag_for_keyword(keyword))[0]
        for keyword in ("InStackPositionNumber", "NominalCardiacTriggerDelayTime")
    ]
    for n, item in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        item.FrameContentSequence[0].DimensionIndexValues = [n % 2 + 1, n // 2 + 1]
    message = r"holds 3 values of NominalCardiacTriggerDelayTime \(DimensionIndexValues\) of the same slices"
    with pytest.raises(DicomSeriesError, match=message):
        enhanced_geometry(dataset)


def test_missing_frame_is_named_with_its_position():
    message = r"missing 1 slice\(s\): the spacing is 2.00 mm but there is a gap of 4.00 mm"
    with pytest.raises(DicomSeriesError, match=message):
        enhanced_geometry(_synthetic([0.0, 2.0, 4.0, 8.0, 10.0]))


def test_uneven_spacing_is_refused():
    with pytest.raises(DicomSeriesError, match=r"uneven slice spacing \(2.00 to 2.60 mm\)"):
        enhanced_geometry(_synthetic([0.0, 2.0, 4.0, 6.6, 8.6]))


def test_missing_plane_position_is_refused():
    dataset = _synthetic([0.0, 2.0, 4.0])
    del dataset.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    message = r"1 of 3 frames have no ImagePositionPatient \(PlanePositionSequence, per frame or shared\)"
    with pytest.raises(DicomSeriesError, match=message):
        enhanced_geometry(dataset, "synthetic.dcm")



def test_plain_duplicate_frame_is_refused_as_in_a_classic_series():
    with pytest.raises(DicomSeriesError, match=r"two slices at the same position \(2.00 mm along the normal\)"):
        enhanced_geometry(_synthetic([0.0, 2.0, 2.0, 4.0]))
