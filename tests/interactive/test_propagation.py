"""Propagation control logic with a ground-truth double in place of SAM: stop rule, both directions,
gap filling, ROI bounds, projections and corrections."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import pytest
import torch

from medicosam_app.api import PropagationFields
from medicosam_app.errors import InvalidRequestError
from medicosam_app.interactive.prompts import SlicePrompt
from medicosam_app.interactive.propagation import Propagator, SliceMask, mask_iou, project
from medicosam_app.interactive.propagation_settings import PropagationSettings

SHAPE = (40, 50)  # rows, cols of every slice


def disc(center, radius) -> np.ndarray:
    rows, cols = np.ogrid[: SHAPE[0], : SHAPE[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


class GroundTruthSegmenterDouble:
    """Test double for SAM on a slice: returns the true object if the prompt touches it, else nothing.

    ``truth[k]`` is the object on slice k (absent: empty); ``confidence[k]`` the predicted IoU it reports.
    """

    def __init__(self, truth: Dict[int, np.ndarray], confidence: Optional[Dict[int, float]] = None):
        self.truth, self.confidence = truth, confidence or {}
        self.calls = []

    def __call__(self, index, prompt: SlicePrompt, logits):
        self.calls.append({"index": index, "prompt": prompt, "logits": logits})
        target = self.truth.get(index, np.zeros(SHAPE, bool))
        touched = any(target[int(y), int(x)] for x, y in prompt.points_xy)
        if prompt.box_xyxy is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box_xyxy)
            touched |= bool(target[y0 : y1 + 1, x0 : x1 + 1].any())
        mask = target.copy() if touched else np.zeros(SHAPE, bool)
        return SliceMask(mask, torch.full((1, 8, 8), float(index)), self.confidence.get(index, 0.95))

    @property
    def decoded(self):
        return [call["index"] for call in self.calls]


def click(x, y) -> SlicePrompt:
    return SlicePrompt(np.array([[x, y]], dtype=float), np.array([1]), None)


def tube(first, last, center=(20, 25), radius=6) -> Dict[int, np.ndarray]:
    return {k: disc(center, radius + (k % 3)) for k in range(first, last + 1)}


def test_one_click_propagates_both_ways_until_the_object_ends():
    double = GroundTruthSegmenterDouble(tube(5, 15))
    result = Propagator(double).run({10: click(25, 20)}, (0, 19))
    assert sorted(result.masks) == list(range(5, 16))
    for k, answer in result.masks.items():
        assert np.array_equal(answer.mask, double.truth[k])
    assert result.slice_range == (5, 15)
    assert result.stops == {"below": "slice 4: empty mask", "above": "slice 16: empty mask"}
    assert double.decoded == [10, 9, 8, 7, 6, 5, 4, 11, 12, 13, 14, 15, 16]


def test_a_jump_in_the_object_stops_the_walk_and_drops_that_slice():
    truth = tube(0, 19)
    for k in range(14, 20):
        truth[k] = disc((20, 25), 18)  # suddenly three times larger: IoU with slice 13 < 0.5
    result = Propagator(GroundTruthSegmenterDouble(truth)).run({10: click(25, 20)}, (0, 19))
    assert max(result.masks) == 13
    assert result.stops["above"].startswith("slice 14: IoU with the previous slice")
    assert result.stops["below"] is None  # reached slice 0


def test_low_predicted_iou_stops_and_middling_confidence_is_listed_for_review():
    double = GroundTruthSegmenterDouble(tube(0, 19), confidence={7: 0.3, 12: 0.7, 13: 0.6})
    result = Propagator(double).run({10: click(25, 20)}, (0, 19))
    assert min(result.masks) == 8
    assert result.stops["below"] == "slice 7: predicted IoU 0.30 < 0.5"
    assert result.low_confidence_slices == [12, 13]
    assert result.predicted_iou[12] == 0.7 and result.predicted_iou[10] == 0.95


def test_the_gap_between_two_prompted_slices_is_filled_from_both_ends():
    double = GroundTruthSegmenterDouble(tube(0, 19))
    result = Propagator(double).run({4: click(25, 20), 12: click(25, 20)}, (0, 19))
    assert sorted(result.masks) == list(range(0, 20))
    gap_calls = [k for k in double.decoded if 4 < k < 12]
    assert gap_calls == [5, 11, 6, 10, 7, 9, 8]  # alternating ends, meeting in the middle, each slice once


def test_when_one_end_of_a_gap_stops_the_other_end_fills_the_rest():
    truth = tube(0, 19)
    double = GroundTruthSegmenterDouble(truth, confidence={5: 0.2})
    result = Propagator(double).run({4: click(25, 20), 12: click(25, 20)}, (0, 19))
    assert set(range(6, 12)) <= set(result.masks)  # filled downwards from 12
    assert 5 not in result.masks
    assert any("from 4" in key for key in result.stops) and any("from 12" in key for key in result.stops)


def test_roi_bounds_limit_the_propagation():
    double = GroundTruthSegmenterDouble(tube(0, 19))
    box = SlicePrompt(np.zeros((0, 2)), np.zeros(0, int), np.array([15.0, 10.0, 35.0, 30.0]))
    result = Propagator(double).run({10: box}, (8, 12))
    assert sorted(result.masks) == [8, 9, 10, 11, 12]
    assert result.stops == {"below": None, "above": None}
    assert not {7, 13} & set(double.decoded)


def test_prompts_outside_the_roi_and_empty_prompted_slices_are_refused():
    double = GroundTruthSegmenterDouble(tube(5, 15))
    with pytest.raises(InvalidRequestError, match="outside the ROI"):
        Propagator(double).run({3: click(25, 20)}, (5, 15))
    with pytest.raises(InvalidRequestError, match="found nothing"):
        Propagator(double).run({10: click(1, 1)}, (0, 19))  # a click beside the object
    with pytest.raises(InvalidRequestError, match="No prompt"):
        Propagator(double).run({}, (0, 19))


def test_projections():
    previous = SliceMask(disc((20, 25), 6), torch.ones(1, 8, 8), 0.9)
    mask_prompt, logits = project(previous, PropagationSettings(projection="mask", box_extension=0.0))
    assert mask_prompt.box_xyxy.tolist() == [19.0, 14.0, 31.0, 26.0] and logits is previous.logits
    box_prompt, logits = project(previous, PropagationSettings(projection="box", box_extension=0.5))
    assert logits is None
    assert box_prompt.box_xyxy.tolist() == [12.5, 7.5, 37.5, 32.5]  # 13 px wide, grown by 6.5 each side
    point_prompt, logits = project(previous, PropagationSettings(projection="points"))
    (x, y), = point_prompt.points_xy
    assert logits is None and point_prompt.box_xyxy is None
    assert (x, y) == (25, 20)  # the disc's centre: its most interior pixel


def test_mask_projection_passes_the_previous_logits_along():
    double = GroundTruthSegmenterDouble(tube(8, 12))
    Propagator(double).run({10: click(25, 20)}, (0, 19))
    by_index = {call["index"]: call for call in double.calls}
    assert by_index[10]["logits"] is None
    assert float(by_index[11]["logits"][0, 0, 0]) == 10.0 and float(by_index[9]["logits"][0, 0, 0]) == 10.0
    assert float(by_index[12]["logits"][0, 0, 0]) == 11.0


def test_a_correction_recomputes_only_the_segments_it_touches():
    truth = tube(0, 19)
    double = GroundTruthSegmenterDouble(truth)
    first = Propagator(double).run({10: click(25, 20)}, (0, 19))
    assert len(double.decoded) == 20

    double.calls.clear()
    corrected = Propagator(double).run({10: click(25, 20), 15: click(24, 21)}, (0, 19), first.state)
    assert double.decoded and min(double.decoded) > 10, "slices below the unchanged prompt are kept"
    assert set(double.decoded) == set(range(11, 20))
    assert corrected.recomputed == sorted(double.decoded)
    for k in range(0, 10):
        assert corrected.masks[k] is first.masks[k]

    double.calls.clear()
    Propagator(double).run({10: click(25, 20), 15: click(24, 21)}, (0, 19), corrected.state)
    assert double.decoded == [], "the same prompts again: nothing to recompute"


def test_settings_come_from_the_request_and_bad_values_are_refused():
    settings = PropagationFields.read({"iou_threshold": "0.8", "projection": "box"}).settings()
    assert settings.iou_threshold == 0.8 and settings.projection == "box" and settings.box_extension == 0.05
    with pytest.raises(InvalidRequestError, match="between 0 and 1"):
        PropagationFields.read({"iou_threshold": 3}).settings()
    with pytest.raises(InvalidRequestError, match="must be a number"):
        PropagationFields.read({"low_confidence": "high"}).settings()
    with pytest.raises(InvalidRequestError, match="projection"):
        PropagationFields.read({"projection": "lasso"}).settings()


def test_mask_iou():
    a, b = disc((20, 25), 6), disc((20, 25), 6)
    assert mask_iou(a, b) == 1.0 and mask_iou(a, np.zeros_like(a)) == 0.0


class LeakingSegmenterDouble(GroundTruthSegmenterDouble):
    """Test double for SAM that leaks: on ``leaky`` slices the mask also takes in a blob beside the object,
    unless a background point of the prompt lies in that blob."""

    LEAK = disc((20, 42), 4)  # beside the tube (centre column 25, radius ≤ 8)

    def __init__(self, truth, leaky):
        super().__init__(truth)
        self.leaky = set(leaky)

    def __call__(self, index, prompt: SlicePrompt, logits):
        answer = super().__call__(index, prompt, logits)
        vetoed = any(self.LEAK[int(y), int(x)] for (x, y), label in zip(prompt.points_xy, prompt.point_labels) if label == 0)
        if index in self.leaky and answer.mask.any() and not vetoed:
            return SliceMask(answer.mask | self.LEAK, answer.logits, answer.predicted_iou)
        return answer


def background(x, y) -> SlicePrompt:
    return SlicePrompt(np.array([[x, y]], dtype=float), np.array([0]), None)


def test_background_points_on_a_propagated_slice_remove_a_leak_there_and_recompute_only_that_stretch():
    truth = tube(0, 19)
    leak = LeakingSegmenterDouble.LEAK
    settings = PropagationSettings(iou_threshold=0.3)  # the leak alone must not stop the walk
    double = LeakingSegmenterDouble(truth, leaky=[13])
    first = Propagator(double, settings).run({10: click(25, 20)}, (0, 19))
    assert (first.masks[13].mask & leak).any(), "the double leaks on slice 13"

    double.calls.clear()
    corrected = Propagator(double, settings).run({10: click(25, 20)}, (0, 19), first.state, corrections={13: background(42, 20)})
    assert corrected.corrected_slices == [13] and corrected.prompted_slices == [10]
    assert not (corrected.masks[13].mask & leak).any(), "the background point removed the leak"
    assert np.array_equal(corrected.masks[13].mask, truth[13])
    call = next(c for c in double.calls if c["index"] == 13)
    assert call["prompt"].box_xyxy is not None, "the correction joins the prompt carried from slice 12"
    assert call["prompt"].point_labels.tolist() == [0] and call["prompt"].points_xy.tolist() == [[42.0, 20.0]]
    assert set(double.decoded) == set(range(11, 20)), "only the stretch above the prompt holds the correction"
    for k in range(0, 10):
        assert corrected.masks[k] is first.masks[k]

    double.calls.clear()
    again = Propagator(double, settings).run({10: click(25, 20)}, (0, 19), corrected.state, corrections={13: background(42, 20)})
    assert double.decoded == [] and np.array_equal(again.masks[13].mask, corrected.masks[13].mask)


def test_a_correction_outside_the_roi_or_on_a_prompted_slice_is_refused():
    double = GroundTruthSegmenterDouble(tube(0, 19))
    with pytest.raises(InvalidRequestError, match="outside the ROI"):
        Propagator(double).run({10: click(25, 20)}, (5, 15), corrections={17: background(1, 1)})
    with pytest.raises(ValueError, match="both prompted and corrections"):
        Propagator(double).run({10: click(25, 20)}, (0, 19), corrections={10: background(1, 1)})


def test_a_frame_step_segments_every_nth_frame_and_holds_the_rest():
    double = GroundTruthSegmenterDouble(tube(0, 20))
    result = Propagator(double, PropagationSettings(frame_step=3)).run({10: click(25, 20)}, (0, 20))
    assert sorted(double.decoded) == [0, 1, 4, 7, 10, 13, 16, 19, 20]  # the last frame before each end always
    assert sorted(result.masks) == list(range(21))
    assert result.held_slices == [2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
    # A held frame shows the mask of the segmented frame before it in the walk (towards the ends).
    assert np.array_equal(result.masks[12].mask, result.masks[10].mask)
    assert np.array_equal(result.masks[8].mask, result.masks[10].mask)
    assert np.array_equal(result.masks[14].mask, result.masks[13].mask)


def test_a_frame_step_leaves_frames_before_a_stop_empty():
    double = GroundTruthSegmenterDouble(tube(6, 14))
    result = Propagator(double, PropagationSettings(frame_step=4)).run({10: click(25, 20)}, (0, 20))
    # Up: 14 kept, 18 empty (stop): 15..17 are not held. Down: 6 kept, 2 empty (stop): 3..5 not held.
    assert sorted(result.masks) == list(range(6, 15))
    assert result.stops["above"].startswith("slice 18") and result.stops["below"].startswith("slice 2")


def test_a_frame_step_fills_a_gap_from_both_ends():
    double = GroundTruthSegmenterDouble(tube(0, 10))
    result = Propagator(double, PropagationSettings(frame_step=3)).run({0: click(25, 20), 10: click(25, 20)}, (0, 10))
    assert sorted(result.masks) == list(range(11))
    assert sorted(double.decoded) == [0, 3, 6, 7, 10]
    assert result.held_slices == [1, 2, 4, 5, 8, 9]


@pytest.mark.parametrize("value", [0, 17, "2.5", "two"])
def test_a_frame_step_out_of_range_is_refused(value):
    with pytest.raises(InvalidRequestError, match="frame_step"):
        PropagationFields.read({"frame_step": value}).settings()


@pytest.mark.parametrize("frame_step", [2, 4, 16])
def test_a_frame_step_never_jumps_over_a_correction(frame_step):
    # A leak on slices 12..15 (the double answers its truth, which leaks there), removed by a background point
    # on slice 13: the walk must decode slice 13 with that point, whatever the step.
    truth = tube(0, 20)
    double = GroundTruthSegmenterDouble(truth)
    background = SlicePrompt(np.array([[1.0, 1.0]]), np.array([0]), None)
    result = Propagator(double, PropagationSettings(frame_step=frame_step)).run(
        {10: click(25, 20)}, (0, 20), corrections={13: background})
    assert 13 in double.decoded and 13 not in result.held_slices
    corrected = [c for c in double.calls if c["index"] == 13][0]["prompt"]
    assert (corrected.point_labels == 0).any()
    assert sorted(result.masks) == list(range(21))
