"""Instance segmentation's control logic with test doubles that stand in for MedicoSAM's decoder: the grid
finds exactly the objects there are, proposals carry their classes and boxes through the display
orientation, drawing follows the proposals and the stop rules, and the label is numbered 1..N."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import OBLIQUE_AXIAL_DIRECTION
from medicosam_app.api import InstanceRequest
from medicosam_app.geometry.coordinates import SliceView
from medicosam_app.errors import InvalidRequestError
from medicosam_app.instances.drawing import InstanceDrawer
from medicosam_app.instances.instance_label import DrawnInstance, compose
from medicosam_app.instances.mask_generator import GridSettings, generate, grid_points
from medicosam_app.instances.proposals import box_proposals, semantic_proposals
from medicosam_app.interactive.propagation import SliceMask

IDENTITY = np.eye(3)
OBLIQUE = np.array(OBLIQUE_AXIAL_DIRECTION).reshape(3, 3)


def objects_slice(shape=(60, 90)):
    """A slice with four separated objects of different sizes (row-major), not symmetric in any way."""
    objects = np.zeros(shape, dtype=np.uint8)
    objects[5:25, 10:50] = 1  # a wide rectangle
    objects[35:55, 60:72] = 2  # a tall one
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    objects[(rows - 45) ** 2 + (cols - 25) ** 2 <= 64] = 3  # a disc
    objects[8:14, 70:76] = 4  # a small square
    return objects


class TrueObjectDecoderDouble:
    """Test double for MedicoSAM's decoder: a point inside an object gets that object (three equal masks of
    falling predicted IoU); a point on the background gets an empty mask the filters drop."""

    def __init__(self, objects: np.ndarray, soft: bool = False) -> None:
        self.objects = objects
        self.soft = soft
        self.points_decoded = 0

    def predict(self, points_xy):
        ious = [
            torch.tensor([0.97, 0.93, 0.9]) if self.objects[int(y), int(x)] else torch.tensor([0.3, 0.2, 0.1])
            for x, y in points_xy
        ]
        self.points_decoded += len(points_xy)
        return torch.stack(ious), points_xy

    def logits(self, points_xy, keep):
        masks = []
        for x, y in points_xy[keep.numpy()]:
            value = self.objects[int(y), int(x)]
            mask = torch.as_tensor(self.objects == value) if value else torch.zeros(self.objects.shape, dtype=torch.bool)
            strength = 0.5 if self.soft else 8.0  # soft logits move across the threshold offset: unstable
            logits = torch.where(mask, strength, -8.0)
            masks.append(torch.stack([logits] * 3))
        return torch.stack(masks)

    def upscale(self, logits):
        return logits


def test_the_grid_covers_the_slice_in_x_y_order():
    points = grid_points((60, 90), 4)
    assert points.shape == (16, 2)
    assert points[:, 0].max() < 90 and points[:, 0].max() > 60  # x spans the 90 columns
    assert points[:, 1].max() < 60 and points[:, 1].max() > 40  # y spans the 60 rows


def test_everything_finds_each_object_once_with_its_box():
    objects = objects_slice()
    decoder = TrueObjectDecoderDouble(objects)
    exact = GridSettings(points_per_side=16, points_per_batch=20, min_area=10, prune_covered=False)
    found = generate(decoder, objects.shape, exact).objects
    assert decoder.points_decoded == 256
    assert len(found) == 4  # dozens of grid points hit the rectangle: NMS keeps one mask each
    by_value = {int(objects[o.mask].max()): o for o in found}
    assert sorted(by_value) == [1, 2, 3, 4]
    for value, found_object in by_value.items():
        assert np.array_equal(found_object.mask, objects == value)
        rows, cols = np.nonzero(objects == value)
        assert found_object.box_xyxy == (cols.min(), rows.min(), cols.max(), rows.max())
        assert objects[int(found_object.point_xy[1]), int(found_object.point_xy[0])] == value
        assert found_object.predicted_iou == pytest.approx(0.97) and found_object.stability == 1.0


def test_everything_drops_small_and_unstable_masks():
    objects = objects_slice()
    small = generate(TrueObjectDecoderDouble(objects), objects.shape, GridSettings(min_area=37)).objects
    assert sorted(int(objects[o.mask].max()) for o in small) == [1, 2, 3]  # the 36-pixel square is gone
    assert generate(TrueObjectDecoderDouble(objects, soft=True), objects.shape, GridSettings()).objects == []
    assert generate(TrueObjectDecoderDouble(objects), objects.shape, GridSettings(pred_iou_thresh=0.98)).objects == []


def test_nms_keeps_the_better_of_two_overlapping_masks():
    objects = objects_slice()

    class ShiftedDuplicateDouble(TrueObjectDecoderDouble):
        def logits(self, points_xy, keep):  # the second mask is the object shifted by one column, scored lower
            logits = super().logits(points_xy, keep)
            logits[:, 1] = torch.roll(logits[:, 0], 1, dims=-1)
            return logits

    # (The 6-pixel square is left out: shifted by one pixel its box overlaps by less than box_nms_thresh.)
    found = generate(ShiftedDuplicateDouble(objects), objects.shape, GridSettings(min_area=40, prune_covered=False)).objects
    assert len(found) == 3 and all(o.predicted_iou == pytest.approx(0.97) for o in found)


def test_pruning_decodes_fewer_points_and_finds_the_same_objects():
    objects = objects_slice()
    display = np.where(objects > 0, 200, 3).astype(np.uint8)  # dark, flat background around bright objects
    display[50:60, 0:8] = 40  # a faint but visible patch: not background
    exact = GridSettings(skip_background=False, prune_covered=False, min_area=10)
    full = generate(TrueObjectDecoderDouble(objects), objects.shape, exact, display)
    double = TrueObjectDecoderDouble(objects)
    pruned = generate(double, objects.shape, GridSettings(min_area=10, points_per_batch=4), display)
    assert full.decoded == 256 and pruned.decoded == double.points_decoded
    assert pruned.decoded + pruned.skipped_background + pruned.skipped_covered == 256
    assert pruned.skipped_background > 100 and pruned.skipped_covered > 20 and pruned.decoded < 100
    assert sorted(o.box_xyxy for o in pruned.objects) == sorted(o.box_xyxy for o in full.objects)
    assert len(pruned.objects) == 4


def test_points_are_decoded_coarse_to_fine():
    from medicosam_app.instances.mask_generator import coarse_to_fine

    order = coarse_to_fine(16)
    assert sorted(order) == list(range(256))
    assert set(order[:4]) == {0, 8, 128, 136}  # every 8th point of every 8th row first
    assert set(order[:16]) == {r * 16 + c for r in (0, 4, 8, 12) for c in (0, 4, 8, 12)}


def test_a_mask_covering_most_of_the_slice_prunes_nothing():
    objects = np.ones((40, 40), dtype=np.uint8)  # one object: the whole slice (a body outline)
    double = TrueObjectDecoderDouble(objects)
    result = generate(double, objects.shape, GridSettings(points_per_side=8, points_per_batch=4))
    assert result.skipped_covered == 0 and result.decoded == 64 and len(result.objects) == 1


def volume_with_objects(shape=(40, 30, 12)):
    """``[i, j, k]`` semantic label: class 1 has two separate blobs, class 2 one; sizes and slice ranges differ."""
    truth = instance_truth(shape)
    return np.where(truth == 3, 2, truth > 0).astype(np.uint8)


@pytest.mark.parametrize("direction", [IDENTITY, OBLIQUE], ids=["identity", "oblique"])
def test_semantic_components_become_proposals_with_boxes_in_display_pixels(direction):
    label = volume_with_objects()
    view = SliceView.create(label.shape, direction, 2)
    confidence = np.where(label == 2, 0.9, 0.6).astype(np.float16)
    proposals = semantic_proposals(label, ["liver", "lesion"], [1, 2], view, confidence, min_voxels=5)
    assert [p.class_name for p in proposals] == ["lesion", "liver", "liver"]  # best mean confidence first
    assert proposals[0].score == pytest.approx(0.9, abs=1e-3)
    lesion = proposals[0]
    assert lesion.slice_range == (1, 3) and lesion.class_value == 2
    truth = view.extract(label == 2, 2)  # the class mask on slice 2 in display orientation
    rows, cols = np.nonzero(truth)
    assert np.array_equal(lesion.boxes[2], [cols.min(), rows.min(), cols.max(), rows.max()])
    assert np.array_equal(lesion.seed_masks[2], truth)
    assert {p.slice_range for p in proposals[1:]} == {(2, 7), (5, 10)}


def test_components_under_min_voxels_are_not_proposed():
    label = volume_with_objects()
    label[0, 0, 0] = 2  # one stray voxel
    view = SliceView.create(label.shape, IDENTITY, 2)
    proposals = semantic_proposals(label, ["liver", "lesion"], [1, 2], view, None, min_voxels=2)
    assert len(proposals) == 3


def test_given_boxes_cover_their_slices_and_clip():
    view = SliceView.create((40, 30, 12), OBLIQUE, 2)
    proposals = box_proposals(InstanceRequest.read({"boxes": [[3, 14, 4, 9, 2, 7], {"box": [25, 36, 18, 26, 5, 10], "class": "node", "score": 0.8}]}).boxes, (40, 30, 12), view)
    assert [p.class_name for p in proposals] == ["object", "node"] and proposals[1].score == 0.8
    assert proposals[0].slice_range == (2, 7) and proposals[0].anchor == 4 and proposals[0].clip_to_boxes
    # Oblique: i runs posterior, so display rows follow i and display columns follow j (flipped or not,
    # the box spans 12 rows and 6 columns, not the other way round).
    x0, y0, x1, y1 = proposals[0].boxes[3]
    assert (y1 - y0, x1 - x0) == (11, 5)


@pytest.mark.parametrize(
    "boxes, message",
    [
        ("3,14", "non-empty list"),
        ([], "non-empty list"),
        ([[1, 2, 3]], "boxes[0]"),
        ([[3, 3, 4, 9, 2, 7]], "flat in the slice plane"),
        ([[100, 120, 4, 9, 2, 7]], "outside the image"),
        ([{"box": [3, 14, 4, 9, 2, 7], "score": 2}], "boxes[0].score"),
        ([[3, 14, 4, "x", 2, 7]], "boxes[0][3]"),
    ],
)
def test_bad_boxes_are_refused_with_the_key_named(boxes, message):
    view = SliceView.create((40, 30, 12), IDENTITY, 2)
    with pytest.raises(InvalidRequestError) as error:
        box_proposals(InstanceRequest.read({"boxes": boxes}).boxes, (40, 30, 12), view)
    assert message in str(error.value) and error.value.status == 422


class TruthSegmenterDouble:
    """Test double for one MedicoSAM slice decode: the true object whose pixels fill most of the prompt box
    (empty if none), with a predicted IoU of 0.9; records the prompts it was given."""

    def __init__(self, truth: np.ndarray, view: SliceView) -> None:
        self.truth = truth
        self.view = view
        self.calls = []

    def __call__(self, index, prompt, logits):
        self.calls.append((index, prompt.box_xyxy.copy(), logits is not None))
        pixels = self.view.extract(self.truth, index)
        x0, y0, x1, y1 = np.round(prompt.box_xyxy).astype(int)
        inside = pixels[y0 : y1 + 1, x0 : x1 + 1]
        values, counts = np.unique(inside[inside > 0], return_counts=True)
        mask = pixels == values[np.argmax(counts)] if len(values) else np.zeros(pixels.shape, dtype=bool)
        return SliceMask(mask, torch.where(torch.as_tensor(mask)[None], 8.0, -8.0), 0.9)


def instance_truth(shape=(40, 30, 12)):
    truth = np.zeros(shape, dtype=np.uint8)
    truth[3:15, 4:10, 2:8] = 1
    truth[25:37, 18:27, 5:11] = 2
    truth[20:24, 3:8, 1:4] = 3
    return truth


@pytest.mark.parametrize("direction", [IDENTITY, OBLIQUE], ids=["identity", "oblique"])
def test_a_coarse_semantic_label_is_redrawn_as_the_true_instances(direction):
    truth = instance_truth()
    semantic = np.zeros_like(truth)
    semantic[2:16, 3:11, 2:8] = 1  # a blob too large by one voxel around
    semantic[24:38, 17:28, 5:11] = 1
    semantic[20:24, 3:8, 1:4] = 2
    view = SliceView.create(truth.shape, direction, 2)
    proposals = semantic_proposals(semantic, ["liver", "lesion"], [1, 2], view)
    drawer = InstanceDrawer(TruthSegmenterDouble(truth, view), view.pixel_shape)
    drawn = [drawer.draw(p) for p in proposals]
    result = compose(drawn, truth.shape, view)
    assert result.label.shape == truth.shape and result.label.max() == 3
    for record in result.records:
        instance = result.label == record["id"]
        values = np.unique(truth[instance])
        assert len(values) == 1 and np.array_equal(instance, truth == values[0])  # exactly one true object
        i, j, k = np.nonzero(instance)
        assert record["box"] == [i.min(), i.max(), j.min(), j.max(), k.min(), k.max()]
        assert record["voxels"] == instance.sum() and record["slice_range"] == [k.min(), k.max()]
        assert record["class"] == ("lesion" if values[0] == 3 else "liver")
        assert record["predicted_iou"] == pytest.approx(0.9) and record["stability"] == 1.0
    assert sorted(r["name"] for r in result.records) == ["lesion 1", "liver 1", "liver 2"]
    assert result.label_names == {r["name"]: r["id"] for r in result.records}


def test_drawing_starts_at_the_largest_slice_walks_both_ways_and_stops_where_the_object_ends():
    truth = instance_truth()
    semantic = np.zeros_like(truth)
    semantic[3:15, 4:10, 1:9] = 1  # the proposal runs one slice further each way than the object
    semantic[3:15, 4:12, 5] = 1  # slice 5 is the largest
    view = SliceView.create(truth.shape, IDENTITY, 2)
    (proposal,) = semantic_proposals(semantic, ["liver"], [1], view)
    assert proposal.anchor == 5
    double = TruthSegmenterDouble(truth, view)
    instance = InstanceDrawer(double, view.pixel_shape).draw(proposal)
    assert sorted(instance.masks) == [2, 3, 4, 5, 6, 7]
    assert instance.stops == {"below": "slice 1: empty mask", "above": "slice 8: empty mask"}
    order = [index for index, _, _ in double.calls]
    assert order == [5, 4, 3, 2, 1, 6, 7, 8]
    assert [has_logits for _, _, has_logits in double.calls] == [False] + [True] * 7  # mask prompts after the anchor


def test_given_boxes_bound_their_instances():
    truth = instance_truth()
    view = SliceView.create(truth.shape, OBLIQUE, 2)
    (proposal,) = box_proposals(InstanceRequest.read({"boxes": [[3, 8, 4, 9, 3, 5]]}).boxes, truth.shape, view)  # half of object 1, three slices
    instance = InstanceDrawer(TruthSegmenterDouble(truth, view), view.pixel_shape).draw(proposal)
    result = compose([instance], truth.shape, view)
    drawn = result.label == 1
    assert drawn.sum() == 6 * 6 * 3
    assert np.array_equal(drawn, np.pad(np.ones((6, 6, 3), bool), ((3, 31), (4, 20), (3, 6))))


def test_no_object_at_the_anchor_box_draws_nothing():
    truth = instance_truth()
    view = SliceView.create(truth.shape, IDENTITY, 2)
    (proposal,) = box_proposals(InstanceRequest.read({"boxes": [[30, 39, 0, 5, 0, 3]]}).boxes, truth.shape, view)
    assert InstanceDrawer(TruthSegmenterDouble(truth, view), view.pixel_shape).draw(proposal) is None


def test_overlapping_instances_keep_the_smaller_visible_and_hidden_ones_are_dropped():
    view = SliceView.create((20, 20, 3), IDENTITY, 2)
    big = np.zeros((20, 20), bool)
    big[2:18, 2:18] = True
    small = np.zeros((20, 20), bool)
    small[5:8, 5:8] = True
    instances = [
        DrawnInstance("object", 0, {1: small}, 0.99, 0.99, 1.0),  # best score first
        DrawnInstance("object", 0, {1: big}, 0.9, 0.9, 1.0),
        DrawnInstance("object", 0, {1: big.copy()}, 0.8, 0.8, 1.0),  # painted under its twin: nothing visible
    ]
    result = compose(instances, (20, 20, 3), view)
    assert [r["id"] for r in result.records] == [1, 2] and result.label.max() == 2
    assert [r["voxels"] for r in result.records] == [9, 16 * 16 - 9]
    assert [r["score"] for r in result.records] == [0.99, 0.9]  # of two equal masks the better one stays
    assert result.label.dtype == np.uint8


@pytest.mark.parametrize(
    "params, message",
    [
        ({"mode": "all"}, "'mode' must be one of"),
        ({"mode": "boxes"}, "needs 'boxes'"),
        ({"points_per_side": 0}, "'points_per_side' must be an integer between 1 and 64"),
        ({"points_per_side": "many"}, "'points_per_side'"),
        ({"pred_iou_thresh": 1.5}, "'pred_iou_thresh'"),
        ({"min_area": -1}, "'min_area'"),
        ({"iou_threshold": True}, "'iou_threshold'"),
        ({"projection": "lasso"}, "'projection'"),
        ({"slice": -1}, "'slice'"),
        ({"axis": 3}, "'axis'"),
        ({"max_instances": 0}, "'max_instances'"),
    ],
)
def test_bad_options_are_refused_before_any_work(params, message):
    with pytest.raises(InvalidRequestError) as error:
        InstanceRequest.read(params).options()
    assert message in str(error.value) and error.value.status == 422


def test_default_options():
    options = InstanceRequest.read({}).options()
    assert options.mode == "semantic" and options.grid.points_per_side == 16 and options.axis == 2
    assert InstanceRequest.read({"mode": "everything", "points_per_side": "8", "slice": "3"}).options().grid.points_per_side == 8


def test_instance_f1_matches_one_to_one_at_iou_one_half():
    from medicosam_app.instances.metrics import instance_f1_per_class, match_instances

    truth = instance_truth()  # objects 1, 2, 3
    predicted = np.zeros_like(truth)
    predicted[truth == 1] = 5  # exact
    predicted[25:31, 18:27, 5:11] = 7  # half of object 2: IoU 0.5 counts
    predicted[0:2, 0:2, 0:2] = 9  # nothing there
    match = match_instances(predicted, truth)
    assert (match.true_positives, match.false_positives, match.false_negatives) == (2, 1, 1)
    assert match.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert match_instances(predicted, truth, threshold=0.51).true_positives == 1

    semantic_truth = np.where(truth == 3, 2, np.where(truth > 0, 1, 0))  # class 1: two blobs, class 2: one
    per_class = instance_f1_per_class(predicted, {5: 1, 7: 1, 9: 2}, semantic_truth, ["liver", "lesion"], [1, 2])
    assert per_class["liver"].true_positives == 2 and per_class["liver"].f1 == 1.0
    assert (per_class["lesion"].true_positives, per_class["lesion"].false_positives) == (0, 1)
