"""How good instances are, as CellSAM measures them: F1 of one-to-one matched instances at IoU ≥ 0.5, per class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class InstanceMatch:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / denominator if denominator else 1.0


def true_instances(label: np.ndarray, value: int, min_voxels: int = 1) -> np.ndarray:
    """A class's true instances: its 3D connected components (26-connected), numbered 1..M."""
    components, count = ndimage.label(label == value, structure=np.ones((3,) * label.ndim, dtype=bool))
    if min_voxels > 1 and count:
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes < min_voxels)
        components[np.isin(components, small[small > 0])] = 0
        components, count = ndimage.label(components > 0, structure=np.ones((3,) * label.ndim, dtype=bool))
    return components


def match_instances(predicted: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> InstanceMatch:
    """Match two instance labels (0 background, any positive ids) by IoU ≥ ``threshold``."""
    pred_ids, pred_index = np.unique(predicted, return_inverse=True)
    true_ids, true_index = np.unique(truth, return_inverse=True)
    joint = np.bincount(pred_index.ravel() * len(true_ids) + true_index.ravel(), minlength=len(pred_ids) * len(true_ids))
    joint = joint.reshape(len(pred_ids), len(true_ids))
    pred_sizes, true_sizes = joint.sum(1), joint.sum(0)
    pred_fg, true_fg = pred_ids != 0, true_ids != 0
    overlap = joint[np.ix_(pred_fg, true_fg)]
    union = pred_sizes[pred_fg][:, None] + true_sizes[true_fg][None, :] - overlap
    iou = np.divide(overlap, union, out=np.zeros(overlap.shape), where=union > 0)
    # One-to-one: the assignment that maximises total IoU, counting pairs at or above the threshold.
    rows, cols = linear_sum_assignment(-np.where(iou >= threshold, iou, 0.0)) if iou.size else ([], [])
    tp = int(sum(iou[r, c] >= threshold for r, c in zip(rows, cols)))
    return InstanceMatch(tp, int(pred_fg.sum()) - tp, int(true_fg.sum()) - tp)


def instance_f1_per_class(
    instances: np.ndarray, instance_classes: Dict[int, int], truth: np.ndarray, names: Sequence[str], values: Sequence[int]
) -> Dict[str, InstanceMatch]:
    """Per class: the predicted instances of that class (``instance_classes``: instance id → class value)
    against the class's connected components in the true label."""
    results = {}
    for name, value in zip(names, values):
        ids = [i for i, v in instance_classes.items() if v == value]
        predicted = np.where(np.isin(instances, ids), instances, 0)
        results[name] = match_instances(predicted, true_instances(truth, value))
    return results
