"""Drawn instances → a label volume with values 1..N in the image's geometry, and one record per instance.

Instances may overlap (a grid prompt finds a kidney and, separately, its pelvis). They are painted largest
first, so a smaller instance inside a larger one stays visible; the records then describe what each value
covers in the label as answered, and an instance left with no voxel is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..geometry.coordinates import SliceView


@dataclass
class DrawnInstance:
    """One object as drawn: a boolean mask per slice (display orientation) and what the model said of it."""

    class_name: str
    class_value: int  # the semantic label value of its class; 0 for a class-less object (``everything``)
    masks: Dict[int, np.ndarray]
    score: float  # the proposer's confidence: semantic probability, given box score, or SAM's predicted IoU
    predicted_iou: float  # mean over its slices
    stability: float  # mean over its slices
    stops: Dict[str, Optional[str]] = field(default_factory=dict)  # why drawing stopped below / above

    @property
    def pixels(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))


@dataclass
class InstanceLabel:
    label: np.ndarray  # values 1..N, ``label[i, j, k]`` in the image's voxel order
    records: List[Dict[str, Any]]

    @property
    def label_names(self) -> Dict[str, int]:
        """``label_names`` for Slicer and OHIF: one segment per instance, named by its class."""
        return {record["name"]: record["id"] for record in self.records}


def instance_names(instances: Sequence[DrawnInstance]) -> List[str]:
    """``liver 1``, ``liver 2``, ``spleen 1``: unique names that keep the class (a DICOM SEG's segment label)."""
    counts: Dict[str, int] = {}
    names = []
    for instance in instances:
        counts[instance.class_name] = counts.get(instance.class_name, 0) + 1
        names.append(f"{instance.class_name} {counts[instance.class_name]}")
    return names


def compose(instances: Sequence[DrawnInstance], shape: Tuple[int, int, int], view: SliceView) -> InstanceLabel:
    """Paint ``instances`` into one label volume and describe each value that is left visible."""
    # Largest first; of two the same size the better-scoring one is painted last, so it is the one seen.
    order = sorted(range(len(instances)), key=lambda n: (-instances[n].pixels, instances[n].score))
    painted = np.zeros(shape, dtype=np.uint16, order="F")
    for n in order:
        for index, mask in instances[n].masks.items():
            view.extract(painted, index)[mask] = n + 1
    visible = [n for n in range(len(instances)) if n + 1 in _present_values(painted)]

    # Renumber the visible instances 1..N in their given order (best first, as the caller sorted them).
    lookup = np.zeros(len(instances) + 1, dtype=np.uint16)
    for new, n in enumerate(visible, start=1):
        lookup[n + 1] = new
    label = lookup[painted].astype(np.uint8 if len(visible) < 256 else np.uint16)
    kept = [instances[n] for n in visible]
    voxels = np.bincount(label.ravel(), minlength=len(kept) + 1)
    extents = ndimage.find_objects(label)
    records = []
    for value, (instance, name, extent) in enumerate(zip(kept, instance_names(kept), extents), start=1):
        box = [int(b) for s in extent for b in (s.start, s.stop - 1)]  # [i0, i1, j0, j1, k0, k1], inclusive
        slices = sorted(instance.masks)
        records.append({
            "id": value,
            "name": name,
            "class": instance.class_name,
            "class_value": instance.class_value,
            "box": box,
            "score": round(float(instance.score), 4),
            "predicted_iou": round(float(instance.predicted_iou), 4),
            "stability": round(float(instance.stability), 4),
            "voxels": int(voxels[value]),
            "slice_range": [slices[0], slices[-1]],
            "stopped": instance.stops,
        })
    return InstanceLabel(np.asfortranarray(label), records)


def _present_values(painted: np.ndarray) -> set:
    return set(np.unique(painted).tolist()) - {0}
