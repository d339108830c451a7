import numpy as np
import pytest

from medicosam_app.embeddings.intensity import IntensityPolicy, rescale_to_uint8, slice_to_rgb


def test_volume_mode_scales_the_volume_then_the_slice():
    volume = np.stack([np.full((4, 4), 100.0), np.linspace(0, 1000, 16).reshape(4, 4)], axis=2)
    policy = IntensityPolicy("volume")
    rgb = slice_to_rgb(volume[:, :, 1], policy.volume_range(volume))
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 4, 3)
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    assert not slice_to_rgb(volume[:, :, 0], policy.volume_range(volume)).any()  # a flat slice is black


def test_window_mode_clips_hu():
    policy = IntensityPolicy("window", window_level=40, window_width=400)
    assert policy.volume_range(np.zeros(3)) == (-160, 240)
    assert rescale_to_uint8(np.array([-1000.0, 40.0, 3000.0]), -160, 240).tolist() == [0, 128, 255]


def test_policy_key_changes_with_the_preprocessing():
    assert IntensityPolicy("volume").key != IntensityPolicy("slice").key
    assert IntensityPolicy("window", 40, 400).key != IntensityPolicy("window", 50, 400).key
    with pytest.raises(ValueError, match="intensity mode"):
        IntensityPolicy("hist-eq")
