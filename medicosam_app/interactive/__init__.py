"""Prompted segmentation: request prompts → a slice's mask (with the previous logits), and the 3D walk that
propagates it through the volume."""

from importlib import import_module
from typing import TYPE_CHECKING, Any, List

from .propagation_settings import MAX_FRAME_STEP, PROJECTIONS, PropagationSettings

if TYPE_CHECKING:
    from .prompts import (
        SlicePrompt,
        Voxel,
        VoxelBox,
        VoxelPrompts,
        box_within,
        choose_slice,
        prompts_within,
        slice_prompt,
    )
    from .propagation import (
        PropagationState,
        Propagator,
        SegmentResult,
        SegmentSlice,
        SliceMask,
        mask_iou,
        project,
        stop_reason,
    )
    from .refinement import RefinementKey, RefinementMemory
    from .slice_segmenter import ClickContext, InteractiveSegmenter
    from .volume_segmenter import PropagationMemory, VolumeSegmenter, capped_bounds

__all__ = [
    "MAX_FRAME_STEP",
    "PROJECTIONS",
    "ClickContext",
    "InteractiveSegmenter",
    "PropagationMemory",
    "PropagationSettings",
    "PropagationState",
    "Propagator",
    "RefinementKey",
    "RefinementMemory",
    "SegmentResult",
    "SegmentSlice",
    "SliceMask",
    "SlicePrompt",
    "VolumeSegmenter",
    "Voxel",
    "VoxelBox",
    "VoxelPrompts",
    "box_within",
    "capped_bounds",
    "choose_slice",
    "mask_iou",
    "project",
    "prompts_within",
    "slice_prompt",
    "stop_reason",
]

# Imported on first use (PEP 562), not here: these modules import torch (most also segment_anything),
# which :mod:`.propagation_settings` (read by the request layer) does without.
# Left out: the function ``volume_segmenter.slice_segmenter``, whose name is a module's
# (``interactive.slice_segmenter``).
_LAZY = {
    "SlicePrompt": ".prompts",
    "Voxel": ".prompts",
    "VoxelBox": ".prompts",
    "VoxelPrompts": ".prompts",
    "box_within": ".prompts",
    "choose_slice": ".prompts",
    "prompts_within": ".prompts",
    "slice_prompt": ".prompts",
    "PropagationState": ".propagation",
    "Propagator": ".propagation",
    "SegmentResult": ".propagation",
    "SegmentSlice": ".propagation",
    "SliceMask": ".propagation",
    "mask_iou": ".propagation",
    "project": ".propagation",
    "stop_reason": ".propagation",
    "RefinementKey": ".refinement",
    "RefinementMemory": ".refinement",
    "ClickContext": ".slice_segmenter",
    "InteractiveSegmenter": ".slice_segmenter",
    "PropagationMemory": ".volume_segmenter",
    "VolumeSegmenter": ".volume_segmenter",
    "capped_bounds": ".volume_segmenter",
}


def __getattr__(name: str) -> Any:
    """A lazy name's value, its module imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
