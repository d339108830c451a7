"""The request layer (medicosam_app.api): each request family read once into typed values, with the 4xx messages
clients have always had. The HTTP guard and the task adapters call the same models (tested through the real server
in tests/server/test_bad_requests.py; here the guard's use of the task's model, with a test double for the app)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medicosam_app.api import (
    MAX_POINTS,
    ClickRequest,
    InstanceRequest,
    PromptFields,
    PropagationRequest,
    SemanticRequest,
)
from medicosam_app.errors import InvalidRequestError
from medicosam_app.interactive.propagation_settings import PropagationSettings
from medicosam_app.interactive.prompts import VoxelPrompts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps" / "medicosam"))
from lib.guards.endpoints import check_infer  # noqa: E402


def test_a_click_is_read_into_prompts_a_context_and_an_axis():
    asked = ClickRequest.read({
        "image": "ct", "image_id": "ct_checked", "foreground": [[1, 2.4, "3"]], "background": None,
        "roi": [9, 4, 0, 3, 2, 2], "slice": "2", "client_id": "slicer-1", "label": "", "reset_state": "no",
        "axis": "1", "model": "medicosam_interactive", "device": "cpu",  # MONAI Label's own keys pass untouched
    })
    assert asked.prompts() == VoxelPrompts(((1, 2, 3),), (), ((4, 9), (0, 3), (2, 2)), 2)
    context = asked.context(default_label="liver")
    assert (context.image_id, context.client_id, context.label, context.reset_state) == ("ct_checked", "slicer-1",
                                                                                           "liver", False)
    assert asked.axis == 1 and asked.result_suffix == ".nii.gz" and asked.result_compress is True
    assert asked.audit_summary() == {"foreground": [[1, 2, 3]], "box": [4, 9, 0, 3, 2, 2], "slice": 2, "axis": 1}


@pytest.mark.parametrize("params, status, message", [
    ({}, 422, "'image' must be sent"),
    ({"image": "ct", "axis": 3}, 422, "'axis' must be an integer between 0 and 2, got 3"),
    ({"image": "ct", "axis": True}, 422, "'axis' must be an integer"),
    ({"image": "ct", "reset_state": "ture"}, 422, "'reset_state' must be true or false"),
    ({"image": "ct", "result_compress": {}}, 422, "'result_compress' must be true or false"),
    ({"image": "ct", "foreground": [[1, 2]]}, 422, r"'foreground\[0\]' must be a voxel index"),
    ({"image": "ct", "slice": 2.5}, 422, "'slice' must be an integer"),
    ({"image": "ct", "foreground": [[0, 0, 0]] * MAX_POINTS, "background": [[0, 0, 0]]}, 413, "at most 1000"),
    ({"image": "ct", "client_id": "x" * 2000}, 422, "'client_id' is 2000 characters long"),
    ([1, 2], 422, "must be a JSON object"),
])
def test_bad_click_values_are_refused_with_what_to_fix(params, status, message):
    with pytest.raises(InvalidRequestError, match=message) as refused:
        ClickRequest.read(params)
    assert refused.value.status == status


def test_propagation_settings_go_over_the_server_defaults_key_by_key():
    defaults = PropagationSettings(iou_threshold=0.7, frame_step=3)
    asked = PropagationRequest.read({"image": "clip", "roi": [0, 5, 0, 5, 0, 0], "min_predicted_iou": "0.2"})
    assert asked.settings(defaults) == PropagationSettings(iou_threshold=0.7, frame_step=3, min_predicted_iou=0.2)
    for key, value in (("projection", "lasso"), ("iou_threshold", 1.5), ("frame_step", 17), ("low_confidence", "high")):
        with pytest.raises(InvalidRequestError, match=f"'{key}'"):
            PropagationRequest.read({"image": "clip", key: value})


def test_instance_requests_take_boxes_with_classes_and_the_grid():
    asked = InstanceRequest.read({
        "image": "ct", "mode": "boxes", "class": "", "points_per_side": "8", "skip_background": "off",
        "boxes": [[9, 2, 0, 3, 1, 1], {"box": [0, 1, 0, 1, 0, 1], "class": "node", "score": "0.5"}],
    })
    options = asked.options(PropagationSettings(iou_threshold=0.3))
    assert options.box_class == "object" and options.grid.points_per_side == 8 and not options.grid.skip_background
    assert [(b.box, b.class_name, b.score) for b in options.boxes] == [
        (((2, 9), (0, 3), (1, 1)), None, 1.0), (((0, 1), (0, 1), (0, 1)), "node", 0.5)]
    assert options.drawing.iou_threshold == 0.3
    assert asked.audit_summary() == {"mode": "boxes", "boxes": 2}
    with pytest.raises(InvalidRequestError, match="mode 'boxes' needs 'boxes'"):
        InstanceRequest.read({"image": "ct", "mode": "boxes"}).options()
    with pytest.raises(InvalidRequestError, match="at most 500") as refused:
        InstanceRequest.read({"image": "ct", "boxes": [[0, 1, 0, 1, 0, 1]] * 501})
    assert refused.value.status == 413
    with pytest.raises(InvalidRequestError, match=r"'boxes\[0\]\.score' must be a number between 0 and 1"):
        InstanceRequest.read({"image": "ct", "boxes": [{"box": [0, 1, 0, 1, 0, 1], "score": 2}]})


def test_semantic_refine_is_a_strict_boolean():
    assert SemanticRequest.read({"image": "ct", "refine": "yes", "min_voxels": "4"}).refine is True
    with pytest.raises(InvalidRequestError, match="'refine' must be true or false"):
        SemanticRequest.read({"image": "ct", "refine": "sure"})


def test_prompts_alone_need_no_image():
    assert PromptFields.read({"foreground": [[1, 1, 1]]}).prompts().foreground == ((1, 1, 1),)


class AppDouble:
    """Test double of the MONAI Label app for the guard: one registered model and its request model."""

    def require_task(self, kind, name):
        if name != "medicosam_3d":
            raise InvalidRequestError(f"no {kind} {name!r}", status=404)
        return name

    def request_model(self, name):
        return PropagationRequest


def test_the_guard_refuses_with_the_tasks_own_request_model_before_the_endpoint_runs():
    arguments = {"model": "medicosam_3d", "image": "ct", "params": {"foreground": [[1, 1, 1]], "frame_step": 40}}
    with pytest.raises(InvalidRequestError, match="'frame_step' must be an integer between 1 and 16"):
        check_infer(AppDouble(), arguments)
    check_infer(AppDouble(), dict(arguments, params={"foreground": [[1, 1, 1]], "frame_step": 2}))


def test_monai_label_options_are_read_strictly_and_drafts_never_replace_the_final_label():
    from medicosam_app.api import InferenceFields

    assert InferenceFields.read({"save_label": "false", "timeout": "30"}).monai_label_options() == {
        "save_label": False, "timeout": 30.0}
    assert InferenceFields.read({"save_label": "yes"}).monai_label_options() == {"save_label": True,
                                                                                  "label_tag": "original"}
    with pytest.raises(InvalidRequestError, match="never saved as the 'final' label"):
        InferenceFields.read({"save_label": True, "label_tag": "final"})
    with pytest.raises(InvalidRequestError, match="'timeout' must be a number of at least 1"):
        InferenceFields.read({"timeout": "soon"})


def test_next_sample_and_batch_bodies_are_read_once_with_bounds():
    from medicosam_app.api import BatchInferRequest, NextSampleRequest

    asked = NextSampleRequest.read({"client_id": "", "label_tag": "final", "labels": ["liver"], "extra": "kept"})
    assert (asked.client_id, asked.label_tag, asked.labels) == (None, "final", ["liver"])
    with pytest.raises(InvalidRequestError, match="plain name"):
        NextSampleRequest.read({"label_tag": "../../x"})
    with pytest.raises(InvalidRequestError, match="nested"):
        NextSampleRequest.read({"x": [[[[1]]]]})
    batch = BatchInferRequest.read({"images": ["ct_1"], "max_workers": "2", "multi_gpu": "off", "gpus": "0,1"})
    assert batch.model_dump(exclude_none=True) == {"label_tag": "original", "images": ["ct_1"], "max_workers": 2,
                                                   "multi_gpu": False, "gpus": "0,1"}
    for body, message in (({"images": "some"}, "'images' must be one of all, labeled, unlabeled"),
                          ({"label_tag": "final"}, "never saved as the 'final' label"),
                          ({"gpus": "cuda"}, "'gpus' must be"), ({"max_batch_size": 2.5}, "'max_batch_size'")):
        with pytest.raises(InvalidRequestError, match=message):
            BatchInferRequest.read(body)


def test_a_labels_params_are_bounded_and_its_label_info_well_formed():
    from medicosam_app.api import LabelSaveParams

    info = [{"name": "liver", "idx": 1, "color": "red"}]
    assert LabelSaveParams.read({"label_info": info, "client_id": "slicer"}).label_info == info
    for params, status, message in (({"label_info": {"name": "liver"}}, 422, "must be a list"),
                                    ({"label_info": [{"idx": -1}]}, 422, r"label_info\[0\]\.idx"),
                                    ({"label_info": [{"idx": 1}] * 1025}, 413, "at most 1024"),
                                    ({"note": "x" * 70000}, 413, "bytes of JSON")):
        with pytest.raises(InvalidRequestError, match=message) as refused:
            LabelSaveParams.read(params)
        assert refused.value.status == status
