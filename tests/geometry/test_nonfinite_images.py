"""NaN and infinite voxels in an image are read as its lowest finite value, in every format (SimpleITK alone would
read a NIfTI's NaN as 0 and an NRRD's as NaN); an image of nothing but NaN is refused."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medicosam_app.errors import ImageReadError
from medicosam_app.geometry.volume import read_label, read_volume


def _write(path, array_kji):
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing((0.7, 1.3, 3.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_nan_and_infinity_become_the_lowest_finite_value(tmp_path, suffix):
    rng = np.random.default_rng(0)
    values = rng.uniform(-1000, 2000, (6, 9, 11)).astype(np.float32)  # [k, j, i], asymmetric
    values[0, 0, 0] = np.nan
    values[5, 8, 3] = np.inf
    values[2, 4, 10] = -np.inf
    volume = read_volume(_write(tmp_path / f"image{suffix}", values))
    lowest = np.nanmin(np.where(np.isfinite(values), values, np.nan))
    assert np.isfinite(volume.array).all()
    expected = np.where(np.isfinite(values), values, lowest).transpose(2, 1, 0)  # → (i, j, k)
    assert np.array_equal(volume.array, expected)
    assert volume.array[0, 0, 0] == volume.array[3, 8, 5] == volume.array[10, 4, 2] == lowest


def test_an_image_of_nothing_but_nan_is_refused(tmp_path):
    with pytest.raises(ImageReadError, match="no finite voxel"):
        read_volume(_write(tmp_path / "empty.nii.gz", np.full((2, 3, 4), np.nan, np.float32)))


def test_integer_images_are_untouched(tmp_path):
    values = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    assert np.array_equal(read_volume(_write(tmp_path / "ct.nii.gz", values)).array, values.transpose(2, 1, 0))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_a_label_with_nan_is_refused_not_filled(tmp_path, suffix):
    values = np.zeros((2, 3, 4), np.float32)
    values[1, 2, 3] = np.nan
    with pytest.raises(ImageReadError, match="not finite"):
        read_label(_write(tmp_path / f"label{suffix}", values))
