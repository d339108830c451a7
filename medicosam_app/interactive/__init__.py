"""Prompted segmentation: request prompts → a slice's mask (with the previous logits), and the 3D walk that
propagates it through the volume."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
