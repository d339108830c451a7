"""The parsers of request values: both spellings of a valid value pass, anything else is a 422 naming the key."""

import math

import pytest

from medicosam_app.api import ClickRequest
from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import (
    parse_bool,
    parse_choice,
    parse_int,
    parse_json_object,
    parse_number,
    parse_text,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True), (False, False), (1, True), (0, False),
        ("true", True), ("false", False), ("TRUE", True), ("False", False), (" yes ", True), ("No", False),
        ("on", True), ("OFF", False), ("1", True), ("0", False),
    ],
)
def test_bool_accepts_the_usual_spellings(value, expected):
    assert parse_bool(value, "reset_state") is expected


@pytest.mark.parametrize("value", ["maybe", "", "tru", {}, {"a": 1}, [], [True], 2, -1, 0.5, math.nan, "none"])
def test_bool_refuses_everything_else_naming_the_key(value):
    with pytest.raises(InvalidRequestError, match="'reset_state' must be true or false") as raised:
        parse_bool(value, "reset_state")
    assert raised.value.status == 422


def test_bool_absent_is_the_default():
    assert parse_bool(None, "k") is False
    assert parse_bool(None, "k", default=True) is True


@pytest.mark.parametrize("value, expected", [(0, 0), (2, 2), (2.0, 2), ("1", 1), (" 2 ", 2), ("+1", 1)])
def test_int_in_range(value, expected):
    assert parse_int(value, "axis", 0, 2) == expected


@pytest.mark.parametrize("value", [3, -1, "x", True, False, 2.5, "2.5", math.inf, math.nan, [], {}, ""])
def test_int_out_of_range_or_not_an_integer_is_refused(value):
    with pytest.raises(InvalidRequestError, match="'axis' must be an integer between 0 and 2"):
        parse_int(value, "axis", 0, 2)


def test_int_missing_without_default_says_so():
    assert parse_int(None, "axis", 0, 2, default=2) == 2
    with pytest.raises(InvalidRequestError, match="missing"):
        parse_int(None, "axis", 0, 2)


def test_number():
    assert parse_number("0.5", "iou", 0, 1) == 0.5
    assert parse_number(1, "iou", 0, 1) == 1.0
    for bad, message in [(math.nan, "finite"), ("inf", "finite"), (True, "must be a number"), ("x", "must be a number"),
                         (2, "between 0 and 1")]:
        with pytest.raises(InvalidRequestError, match=message):
            parse_number(bad, "iou", 0, 1)


def test_choice():
    assert parse_choice("box", "projection", ("mask", "box")) == "box"
    assert parse_choice(None, "projection", ("mask", "box"), default="mask") == "mask"
    with pytest.raises(InvalidRequestError, match="'projection' must be one of 'mask', 'box'"):
        parse_choice("zigzag", "projection", ("mask", "box"))


def test_text():
    assert parse_text("liver", "label") == "liver"
    assert parse_text(7, "label") == "7"
    assert parse_text("", "label", default="label") == "label"
    for bad, message in [({}, "must be a string"), ([1], "must be a string"), (True, "must be a string"),
                         ("x" * 5000, "at most"), ("a\x00b", "NUL"), ("", "missing or empty")]:
        with pytest.raises(InvalidRequestError, match=message):
            parse_text(bad, "label")


def test_json_object():
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object("") == {} and parse_json_object(None) == {}
    with pytest.raises(InvalidRequestError, match="not valid JSON") as raised:
        parse_json_object('{"a": ')
    assert raised.value.status == 400
    for text, kind in [("[1, 2]", "list"), ("3", "int"), ('"x"', "str"), ("null", "NoneType")]:
        with pytest.raises(InvalidRequestError, match=f"must be a JSON object.*got {kind}") as raised:
            parse_json_object(text)
        assert raised.value.status == 422
    with pytest.raises(InvalidRequestError, match="nested too deeply|not valid JSON"):
        parse_json_object("[" * 100000)


@pytest.mark.parametrize("value, expected", [("false", False), ("true", True), (False, False), ("0", False), (1, True)])
def test_click_context_reads_reset_state_as_sent(value, expected):
    """The bug this module fixes: ``"reset_state": "false"`` used to reset, because a non-empty string is truthy."""
    context = ClickRequest.read({"image": "ct", "reset_state": value}).context("label")
    assert context.reset_state is expected


def test_click_context_refuses_objects_for_its_keys():
    for key, value in [("reset_state", {}), ("label", {"x": 1}), ("client_id", [1]), ("reset_state", "maybe")]:
        with pytest.raises(InvalidRequestError, match=f"'{key}'"):
            ClickRequest.read({"image": "ct", key: value}).context("label")
    context = ClickRequest.read({"image": "ct"}).context("organ")
    assert (context.image_id, context.client_id, context.label) == ("ct", None, "organ")  # anonymous: no refinement memory
    assert context.reset_state is False


def test_training_options_read_booleans_by_the_request_rule():
    """``warm_start=ture`` was read as False without a word; now every option set refuses it like a request."""
    from medicosam_app.finetune.config import FinetuneConfig
    from medicosam_app.semantic.config import TrainingConfig

    assert TrainingConfig.from_mapping({"warm_start": "off"}).warm_start is False
    assert FinetuneConfig.from_mapping({"warm_start": "Yes"}).warm_start is True
    for options in (TrainingConfig, FinetuneConfig):
        with pytest.raises(InvalidRequestError, match="'warm_start' must be true or false"):
            options.from_mapping({"warm_start": "ture"})
