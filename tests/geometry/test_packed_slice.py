"""Training slices kept packed (medicosam_app.geometry.packed_slice): the same array back, a fraction of the bytes."""

from __future__ import annotations

import numpy as np
import pytest

from medicosam_app.finetune.samples import ObjectSample
from medicosam_app.geometry.packed_slice import PackedSlice


def test_a_bool_object_comes_back_exactly_in_a_fraction_of_the_bytes():
    mask = np.zeros((512, 384), bool)
    rows, cols = np.mgrid[:512, :384]
    mask[((rows - 300) / 40.0) ** 2 + ((cols - 90) / 25.0) ** 2 <= 1] = True  # off-centre, not square
    mask[310, 60] = False  # a hole
    packed = PackedSlice.of(mask)
    assert packed.box == (260, 341, 65, 116) and packed.shape == (512, 384)
    assert np.array_equal(packed.unpack(), mask) and packed.unpack().dtype == np.bool_
    assert packed.nbytes < mask.size / 200


def test_class_indices_and_empty_slices_come_back_exactly():
    target = np.zeros((40, 30), np.uint8)
    target[3:9, 20:27] = 2
    target[30, 2] = 1
    assert np.array_equal(PackedSlice.of(target).unpack(), target)
    empty = PackedSlice.of(np.zeros((7, 5), np.uint8))
    assert empty.nbytes == 0 and np.array_equal(empty.unpack(), np.zeros((7, 5), np.uint8))
    with pytest.raises(ValueError, match="2D bool or uint8"):
        PackedSlice.of(np.zeros((3, 4, 5), np.uint8))


def test_an_object_sample_keeps_its_mask_and_size():
    mask = np.zeros((48, 40), bool)
    mask[5:12, 30:38] = True
    sample = ObjectSample("knee", 4, key=None, mask=mask)
    assert np.array_equal(sample.mask, mask) and sample.original_size == (48, 40)
