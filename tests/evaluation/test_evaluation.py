"""The simulated-annotator evaluation: the clicks each protocol places (hand-computed), NoC counting, and the
whole command on the MNI sample with a tiny random MedicoSAM."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from medicosam_app.cli import main
from medicosam_app.geometry.coordinates import SliceView
from medicosam_app.evaluation.clicks import (
    Click,
    LargestErrorCentre,
    RandomErrorClicks,
    box_ring,
    deepest_pixel,
    first_click,
    mask_box,
)
from medicosam_app.evaluation.objects import components, slice_objects, volume_objects
from medicosam_app.evaluation.session import dice, simulate


def _square(shape=(12, 14), rows=(2, 8), cols=(3, 9)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_medicosam_rule_clicks_the_only_missed_and_the_only_extra_pixel():
    truth = _square()
    prediction = truth.copy()
    prediction[4, 5] = False  # the one false negative
    prediction[10, 1] = True  # the one false positive
    for seed in range(5):  # whatever the generator draws, a one-pixel region has one answer
        clicks = RandomErrorClicks()(truth, prediction, np.random.default_rng(seed))
        assert clicks == [Click(5, 4, True), Click(1, 10, False)]


def test_medicosam_rule_without_errors_clicks_inside_and_in_the_ring_around_the_box():
    truth = _square()
    ring = box_ring(truth)
    assert ring.sum() == (6 + 6) * (6 + 6) - 36 - 1 * 12  # box 6×6 grown 3 px each side, clipped at row 11 (12 rows)
    for seed in range(20):
        positive, negative = RandomErrorClicks()(truth, truth.copy(), np.random.default_rng(seed))
        assert positive.positive and truth[positive.y, positive.x]
        assert not negative.positive and ring[negative.y, negative.x]
    a = RandomErrorClicks()(truth, _square(cols=(3, 7)), np.random.default_rng(7))
    b = RandomErrorClicks()(truth, _square(cols=(3, 7)), np.random.default_rng(7))
    assert a == b  # seeded: reproducible


def test_cvpr25_rule_clicks_the_centre_of_the_largest_error_with_the_truths_sign():
    truth = _square((14, 16), rows=(2, 11), cols=(2, 13))
    prediction = truth.copy()
    prediction[4:9, 6:11] = False  # a 5×5 hole: the largest error, centred at row 6, col 8
    prediction[12:14, 0:2] = True  # a 2×2 false positive
    assert LargestErrorCentre()(truth, prediction) == [Click(8, 6, True)]

    prediction = truth.copy()
    prediction[0:10, 13:16] = True  # a 10×3 false positive along the right border (cols 13..15)
    # The border counts as outside: depth 2 at col 14 on rows 1..8, the first of them in raster order.
    assert LargestErrorCentre()(truth, prediction) == [Click(14, 1, False)]
    assert LargestErrorCentre()(truth, truth.copy()) == []


def test_the_first_point_lies_inside_a_concave_object_and_the_box_covers_it_with_exclusive_ends():
    shape = np.zeros((20, 20), dtype=bool)
    shape[2:18, 2:6] = True
    shape[14:18, 2:18] = True  # an L: its centroid lies outside it
    click = first_click(shape)
    assert shape[click.y, click.x] and click.positive
    rows, cols = np.nonzero(shape)
    assert not shape[int(round(rows.mean())), int(round(cols.mean()))]
    assert deepest_pixel(shape) == (click.y, click.x)
    assert mask_box(shape).tolist() == [2, 2, 18, 18]


def test_components_drop_specks_and_number_largest_first():
    mask = np.zeros((30, 30), dtype=bool)
    mask[0:5, 0:5] = True  # 25
    mask[10:20, 10:20] = True  # 100
    mask[25:29, 25:29] = True  # 16 < 20: dropped
    mask[5, 5] = True  # touches the first diagonally: 8-connected, one object of 26
    found = components(mask)
    assert [int(c.sum()) for c in found] == [100, 26]


def test_slice_objects_are_in_display_orientation_and_volume_objects_in_3d():
    label = np.zeros((10, 12, 6), dtype=np.uint8)
    label[1:6, 2:9, 1:4] = 1
    label[7:10, 0:3, 2:5] = 2  # 3×3 per slice: under 20 px in 2D, 27 voxels in 3D
    direction = np.diag([-1.0, -1.0, 1.0])  # LPS-stored: the display flips rows and columns
    view = SliceView.create(label.shape, direction, 2)
    objects = slice_objects("img", label, view, {"a": 1, "b": 2}, [2])
    assert [(o.class_name, o.pixels) for o in objects] == [("a", 35)]
    assert np.array_equal(objects[0].mask, view.extract(label, 2) == 1)
    assert [(o.class_name, int(o.mask.sum())) for o in volume_objects("img", label, {"a": 1, "b": 2})] == [("a", 105), ("b", 27)]


class ScriptedModel:
    """A test double for the predictor: returns the truth cut to the first ``k`` rows, where ``k`` grows
    with the number of positive clicks, so Dice rises by a known amount per round."""

    def __init__(self, truth: np.ndarray, rows_per_click: int):
        self.truth, self.rows_per_click, self.calls = truth, rows_per_click, []

    def __call__(self, points, labels, box, logits):
        self.calls.append((points.copy(), labels.copy(), None if box is None else box.copy(), logits))
        rows = np.flatnonzero(self.truth.any(axis=1))
        k = (int(labels.sum()) + (box is not None)) * self.rows_per_click
        mask = np.zeros_like(self.truth)
        mask[rows[: min(k, len(rows))]] = self.truth[rows[: min(k, len(rows))]]
        return mask, torch.full((1, 8, 8), float(len(self.calls)))


def test_noc_counts_prompts_and_the_session_goes_on_only_until_the_goal_or_the_cap():
    truth = _square((40, 40), rows=(0, 20), cols=(5, 25))
    model = ScriptedModel(truth, rows_per_click=4)  # 4 of 20 rows per positive prompt
    trace = simulate(model, truth, "box", RandomErrorClicks(), np.random.default_rng(0), iterations=3, mask_prompt=True)
    # box: 4 rows; +1 positive per round: 8, 12, 16, 20 rows. Dice = 2k/(k+20).
    assert trace.prompts == [1, 3, 5, 7, 9]
    assert trace.dice == pytest.approx([2 * k / (k + 20) for k in (4, 8, 12, 16, 20)])
    assert trace.noc(0.9) == (9, True) and trace.noc(0.85) == (7, True)  # 0.889 at 16 rows < 0.9
    assert model.calls[0][2].tolist() == [5, 0, 25, 20] and model.calls[0][3] is None
    assert all(call[3] is not None for call in model.calls[1:])  # previous logits go back with corrections

    slow = ScriptedModel(truth, rows_per_click=1)
    trace = simulate(slow, truth, "point", LargestErrorCentre(), None, iterations=8, mask_prompt=False)
    # n rows after n prompts, Dice 2n/(n+20): 0.9 needs n ≥ 16.4, so past the 8 iterations until 17, then stop.
    assert trace.prompts == list(range(1, 18))
    assert trace.noc(0.9) == (17, True) and trace.noc(0.85) == (15, True)
    assert all(call[3] is None for call in slow.calls)


def test_an_object_never_reached_counts_the_cap_and_a_failure():
    truth = _square((40, 40), rows=(0, 20), cols=(5, 25))
    never = ScriptedModel(truth, rows_per_click=0)
    trace = simulate(never, truth, "point", RandomErrorClicks(), np.random.default_rng(1), iterations=4)
    assert trace.prompts[-1] >= 20 and trace.noc(0.9) == (20, False)
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def _evaluate(studies, checkpoint, cache, *extra):
    return main([
        "evaluate", "--studies", str(studies), "--checkpoint", str(checkpoint), "--cache-dir", str(cache),
        "--precision", "fp32", "--max-slices-per-image", "3", "--quiet", *extra,
    ])


def test_the_evaluate_command_on_the_mni_sample_writes_traces_a_table_and_a_comparison(
    mni_studies, tiny256_checkpoint, tiny_checkpoint, tmp_path, capsys
):
    out = tmp_path / "run.json"
    assert _evaluate(mni_studies, tiny256_checkpoint, tmp_path / "cache", "--json", str(out), "--csv", str(tmp_path / "run.csv")) == 0
    table = capsys.readouterr().out
    assert "protocol medicosam, 3 image(s)" in table and "NoC@90" in table and "3D Dice" in table
    document = json.loads(out.read_text())
    assert document["images"] == ["subject_0", "subject_1", "subject_2"]  # subject_3 has no final label
    objects = document["objects"]
    flat = [o for o in objects if o["dimension"] == "2d"]
    solid = [o for o in objects if o["dimension"] == "3d"]
    assert {o["start"] for o in objects} == {"box", "point"} and {o["class_name"] for o in flat} == {"grey_matter", "white_matter"}
    for o in flat:
        assert len(o["dice"]) >= 8 and all(0.0 <= d <= 1.0 for d in o["dice"])
        assert o["prompts"][0] == 1 and o["prompts"] == sorted(o["prompts"]) and o["size"] >= 20
        assert set(o["noc"]) == {"85", "90"} and all(1 <= n <= 20 for n in o["noc"].values())
    assert solid and all(len(o["dice"]) == 1 and o["detail"]["slices_truth"] > 0 for o in solid)
    summary = document["summary"]["box"]["2d"]
    assert summary["objects"] == len([o for o in flat if o["start"] == "box"]) and len(summary["dice_per_iteration"]) == 8
    with open(tmp_path / "run.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(objects) and {r["model"] for r in rows} == {"served"}

    # The same run again gives the same traces (seeded clicks, cached embeddings); a comparison with the
    # same weights differs by nothing, with other weights it reports both.
    again = tmp_path / "again.json"
    assert _evaluate(mni_studies, tiny256_checkpoint, tmp_path / "cache", "--json", str(again), "--start", "box",
                     "--compare", str(tiny_checkpoint)) == 0
    repeat = json.loads(again.read_text())
    assert [o["dice"] for o in repeat["objects"]] == [o["dice"] for o in objects if o["start"] == "box"]
    assert repeat["compare"]["model"]["checkpoint"] == tiny_checkpoint.name
    assert "Δ served−compare" in capsys.readouterr().out


def test_the_cvpr25_protocol_and_bad_arguments(mni_studies, tiny256_checkpoint, tmp_path, capsys):
    out = tmp_path / "cvpr.json"
    assert _evaluate(mni_studies, tiny256_checkpoint, tmp_path / "cache", "--protocol", "cvpr25", "--no-3d",
                     "--start", "point", "--json", str(out)) == 0
    document = json.loads(out.read_text())
    assert {o["dimension"] for o in document["objects"]} == {"2d"}
    for o in document["objects"]:
        assert o["prompts"][1] - o["prompts"][0] <= 1  # one click per round (none once perfect)
    assert _evaluate(tmp_path / "nowhere", tiny256_checkpoint, tmp_path / "cache") == 2
    assert _evaluate(mni_studies, tiny256_checkpoint, tmp_path / "cache", "--iterations", "0") == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _evaluate(empty, tiny256_checkpoint, tmp_path / "cache") == 2
    assert "no image" in capsys.readouterr().err
