"""Voxel ↔ display pixel: exercised with asymmetric arrays and several directions so no flip or transpose hides."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medicosam_app.geometry.coordinates import SamFrame, SliceView

IDENTITY = np.eye(3)
RAS_STORED = np.diag([-1.0, -1.0, 1.0])  # a NIfTI in RAS+ as ITK sees it (LPS world)
SWAPPED = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # i runs posterior, j runs right
SAGITTAL_STACK = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # k across L-R


def _array(shape=(7, 5, 4)):
    return np.arange(np.prod(shape), dtype=float).reshape(shape) ** 1.1


@pytest.mark.parametrize("direction", [IDENTITY, RAS_STORED, SWAPPED, SAGITTAL_STACK])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_every_voxel_lands_on_the_pixel_voxel_to_pixel_names(direction, axis):
    array = _array()
    view = SliceView.create(array.shape, direction, axis)
    for ijk in itertools.product(*[range(n) for n in array.shape]):
        row, col = view.voxel_to_pixel(ijk)
        assert view.extract(array, ijk[axis])[int(row), int(col)] == array[ijk]


@pytest.mark.parametrize("direction", [IDENTITY, RAS_STORED, SWAPPED])
def test_paste_writes_exactly_the_extracted_slice_back(direction):
    array = _array()
    view = SliceView.create(array.shape, direction, 2)
    out = np.zeros_like(array)
    view.paste(view.extract(array, 2), out, 2)
    assert np.array_equal(out[:, :, 2], array[:, :, 2])
    assert not out[:, :, [0, 1, 3]].any()


def _world_of_pixel(view, direction, row, col, index):
    ijk = [0, 0, 0]
    ijk[view.axis] = index
    rows, cols = view.pixel_shape
    ijk[view.row_axis] = rows - 1 - row if view.flip_rows else row
    ijk[view.col_axis] = cols - 1 - col if view.flip_cols else col
    return direction @ np.array(ijk, dtype=float)


@pytest.mark.parametrize("direction", [IDENTITY, RAS_STORED, SWAPPED])
def test_axial_slices_show_anterior_up_and_patient_right_on_the_left(direction):
    view = SliceView.create((7, 5, 4), direction, 2)
    assert view.plane == "axial"
    top, bottom = _world_of_pixel(view, direction, 0, 0, 0), _world_of_pixel(view, direction, view.pixel_shape[0] - 1, 0, 0)
    left, right = _world_of_pixel(view, direction, 0, 0, 0), _world_of_pixel(view, direction, 0, view.pixel_shape[1] - 1, 0)
    assert bottom[1] > top[1]  # LPS y grows posterior: rows run anterior → posterior
    assert right[0] > left[0]  # LPS x grows to the patient's left: columns run right → left


def test_sagittal_stack_shows_superior_up():
    view = SliceView.create((7, 5, 4), SAGITTAL_STACK, 2)
    assert view.plane == "sagittal"
    top = _world_of_pixel(view, SAGITTAL_STACK, 0, 0, 0)
    bottom = _world_of_pixel(view, SAGITTAL_STACK, view.pixel_shape[0] - 1, 0, 0)
    assert top[2] > bottom[2]


def test_ras_nifti_is_flipped_on_both_axes_and_identity_is_not():
    assert SliceView.create((7, 5, 4), RAS_STORED, 2).flip_rows and SliceView.create((7, 5, 4), RAS_STORED, 2).flip_cols
    identity = SliceView.create((7, 5, 4), IDENTITY, 2)
    assert (identity.row_axis, identity.col_axis, identity.flip_rows, identity.flip_cols) == (1, 0, False, False)


def test_sam_frame_scales_like_resize_longest_side():
    frame = SamFrame((200, 100), 1024)
    assert frame.input_size == (1024, 512)
    assert np.allclose(frame.points([[50, 100]]), [[256, 512]])
    assert np.allclose(frame.boxes([[0, 0, 100, 200]]), [[0, 0, 512, 1024]])
