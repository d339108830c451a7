"""``medicosam_instances``: every object, by grid prompts, the semantic model's proposals or given boxes."""

from __future__ import annotations

from typing import Annotated, Any, Dict, Optional, Tuple

from pydantic import BeforeValidator, Field, ValidationInfo

from ..errors import InvalidRequestError
from ..instances.mask_generator import GridSettings
from ..instances.proposals import RequestedBox
from ..instances.segmenter import MODES, InstanceOptions
from ..interactive.propagation_settings import PropagationSettings
from ..request_values import parse_number, parse_text, shortened_repr
from .fields import Choice, Flag, InferenceFields, Integer, Number, OptionalText, RequestModel
from .prompts import read_box
from .propagation import PropagationFields

MAX_BOXES = 500  # per request; each box is drawn slice by slice
CLASS_NAME_LENGTH = 64


def _boxes(value: Any, info: ValidationInfo) -> Tuple[RequestedBox, ...]:
    """``[[i0, i1, j0, j1, k0, k1], ...]``, or objects ``{"box": [...], "class": "lesion", "score": 0.9}``."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise InvalidRequestError(
            f"'boxes' must be a non-empty list of voxel boxes [[i0, i1, j0, j1, k0, k1], ...], got {shortened_repr(value)}."
        )
    if len(value) > MAX_BOXES:
        raise InvalidRequestError(f"{len(value)} boxes were sent; at most {MAX_BOXES} are accepted.", status=413)
    boxes = []
    for n, item in enumerate(value):
        key, class_name, score = f"boxes[{n}]", None, 1.0
        if isinstance(item, dict):
            if item.get("class") is not None:
                class_name = parse_text(item["class"], f"{key}.class", max_length=CLASS_NAME_LENGTH)
            score = parse_number(item.get("score"), f"{key}.score", 0.0, 1.0, default=1.0)
            item, key = item.get("box"), f"{key}.box"
        box = read_box(item, key) if item is not None else None
        if box is None:
            raise InvalidRequestError(f"'{key}' must be a voxel box [i0, i1, j0, j1, k0, k1], got {shortened_repr(item)}.")
        boxes.append(RequestedBox(box, class_name, score))
    return tuple(boxes)


class GridFields(RequestModel):
    """SAM's automatic mask generator settings (``everything``); each key left out keeps its default."""

    points_per_side: Integer(1, 64) = None
    points_per_batch: Integer(1, 256) = None
    pred_iou_thresh: Number(0.0, 1.0) = None
    stability_score_thresh: Number(0.0, 1.0) = None
    stability_score_offset: Number(0.0, 10.0) = None
    box_nms_thresh: Number(0.0, 1.0) = None
    min_area: Integer(0, 1 << 24) = None
    background_level: Integer(0, 255) = None
    max_covering_fraction: Number(0.0, 1.0) = None
    skip_background: Optional[Flag] = None
    prune_covered: Optional[Flag] = None

    def grid(self) -> GridSettings:
        sent = {name: getattr(self, name) for name in GridFields.model_fields if getattr(self, name) is not None}
        return GridSettings(**sent)


class InstanceRequest(GridFields, PropagationFields, InferenceFields):
    """A ``medicosam_instances`` request: the mode and its inputs, the grid and drawing settings, the limits."""

    mode: Choice(MODES) = "semantic"
    axis: Integer(0, 2) = 2
    slice: Optional[Integer(minimum=0)] = None
    boxes: Annotated[Tuple[RequestedBox, ...], BeforeValidator(_boxes)] = ()
    box_class: OptionalText(max_length=CLASS_NAME_LENGTH, key="class") = Field(None, alias="class")
    min_voxels: Integer(1, 1 << 30) = 10
    max_instances: Integer(1, 1000) = 100

    def audit_summary(self) -> Dict[str, Any]:
        """What the audit line keeps: the mode, axis and slice where sent, and how many boxes."""
        summary = self.sent("mode", "axis", "slice")
        if self.boxes:
            summary["boxes"] = len(self.boxes)
        return summary

    def options(self, drawing: PropagationSettings = PropagationSettings()) -> InstanceOptions:
        """What the request asks for; ``drawing``: the server's drawing defaults."""
        if self.mode == "boxes" and not self.boxes:
            raise InvalidRequestError("mode 'boxes' needs 'boxes': [[i0, i1, j0, j1, k0, k1], ...] in voxel indices.")
        return InstanceOptions(
            mode=self.mode, axis=self.axis, slice_index=self.slice, boxes=self.boxes, box_class=self.box_class or "object",
            grid=self.grid(), drawing=self.settings(drawing), min_voxels=self.min_voxels,
            max_instances=self.max_instances,
        )
