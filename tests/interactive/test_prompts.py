import math

import numpy as np
import pytest

from medicosam_app.geometry.coordinates import SliceView
from medicosam_app.errors import InvalidRequestError
from medicosam_app.api import PromptFields
from medicosam_app.interactive.prompts import choose_slice, prompts_within, slice_prompt

SHAPE = (40, 30, 12)


def parse_voxel_prompts(params, shape):
    """A request's prompts as the request layer reads them, then checked against an image of ``shape``."""
    return prompts_within(PromptFields.read(params).prompts(), shape)
VIEW = SliceView.create(SHAPE, np.eye(3), 2)  # rows = j, cols = i


@pytest.mark.parametrize(
    "params, message",
    [
        ({"foreground": [[40, 0, 0]]}, "outside the image"),
        ({"foreground": [[-1, 0, 0]]}, "outside the image"),
        ({"foreground": [["a", 0, 0]]}, "must be a number"),
        ({"foreground": [[math.nan, 0, 0]]}, "finite"),
        ({"foreground": [[1, 2]]}, r"\[i, j, k\]"),
        ({"foreground": "1,2,3"}, "list of voxel indices"),
        ({"roi": [1, 2, 3]}, r"\[i0, i1, j0, j1, k0, k1\]"),
        ({"roi": [50, 60, 0, 5, 0, 3]}, "outside the image"),
        ({"slice": "x", "foreground": [[1, 1, 1]]}, "'slice' must be an integer"),
    ],
)
def test_bad_prompts_are_rejected_with_what_to_fix(params, message):
    with pytest.raises(InvalidRequestError, match=message):
        parse_voxel_prompts(params, SHAPE)


def test_slice_comes_from_request_then_points_then_roi():
    assert choose_slice(parse_voxel_prompts({"foreground": [[1, 1, 3]], "slice": 5}, SHAPE), VIEW) == 5
    assert choose_slice(parse_voxel_prompts({"foreground": [[1, 1, 3], [2, 2, 7]]}, SHAPE), VIEW) == 7  # OHIF: no slice
    assert choose_slice(parse_voxel_prompts({"roi": [0, 5, 0, 5, 2, 6]}, SHAPE), VIEW) == 4
    with pytest.raises(InvalidRequestError, match="No prompt"):
        choose_slice(parse_voxel_prompts({}, SHAPE), VIEW)
    with pytest.raises(InvalidRequestError, match="outside the image"):
        choose_slice(parse_voxel_prompts({"foreground": [[1, 1, 1]], "slice": 12}, SHAPE), VIEW)


def test_points_on_other_slices_are_left_out_and_labels_kept():
    prompts = parse_voxel_prompts({"foreground": [[3, 4, 5], [9, 9, 6]], "background": [[7, 8, 5]]}, SHAPE)
    prompt = slice_prompt(prompts, VIEW, 5)
    assert prompt.points_xy.tolist() == [[3, 4], [7, 8]]  # (x, y) = (i, j) for an identity volume
    assert prompt.point_labels.tolist() == [1, 0]


def test_roi_is_read_as_i0_i1_j0_j1_k0_k1_in_either_corner_order():
    # Slicer sends the RAS min corner first, which is the larger index on axes that run against RAS.
    for roi in ([4, 20, 2, 9, 3, 6], [20, 4, 9, 2, 6, 3]):
        prompt = slice_prompt(parse_voxel_prompts({"roi": roi}, SHAPE), VIEW, 5)
        assert prompt.box_xyxy.tolist() == [4, 2, 20, 9]


def test_roi_not_covering_the_slice_or_flat_is_rejected():
    with pytest.raises(InvalidRequestError, match="covers slices 0..2"):
        slice_prompt(parse_voxel_prompts({"roi": [4, 20, 2, 9, 0, 2]}, SHAPE), VIEW, 5)
    with pytest.raises(InvalidRequestError, match="flat"):
        slice_prompt(parse_voxel_prompts({"roi": [4, 4, 2, 9, 0, 6]}, SHAPE), VIEW, 5)


def test_roi_partly_outside_is_clipped_to_the_image():
    prompt = slice_prompt(parse_voxel_prompts({"roi": [-5, 100, 2, 9, 0, 11]}, SHAPE), VIEW, 5)
    assert prompt.box_xyxy.tolist() == [0, 2, 39, 9]


def test_only_background_points_are_refused():
    with pytest.raises(InvalidRequestError, match="foreground"):
        slice_prompt(parse_voxel_prompts({"background": [[1, 1, 5]]}, SHAPE), VIEW, 5)
