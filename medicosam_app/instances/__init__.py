"""Automatic instance segmentation, CellSAM's way: something proposes where objects are, MedicoSAM draws them.

- :mod:`.mask_generator` — the ``everything`` mode: a grid of point prompts on one slice, filtered by the
  model's predicted IoU and mask stability, duplicates removed by non-maximum suppression.
- :mod:`.proposals` — where objects are, from the semantic decoder's components or from boxes a request gives.
- :mod:`.drawing` — one proposal → one 3D instance, slice by slice, with 3D propagation's stop rules.
- :mod:`.instance_label` — instances → one label volume (values 1..N) and the JSON that describes each.
- :mod:`.segmenter` — the modes end to end on a volume, sharing the interactive tasks' embedding cache.
"""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .drawing import InstanceDrawer
    from .grid_decoder import GridMaskDecoder
    from .instance_label import DrawnInstance, compose
    from .mask_generator import (
        GridSettings,
        PredictorPointDecoder,
        coarse_to_fine,
        generate,
        grid_points,
        on_flat_background,
    )
    from .metrics import instance_f1_per_class, match_instances
    from .proposals import RequestedBox, box_proposals, semantic_proposals
    from .segmenter import MODES, InstanceOptions, InstanceSegmenter

__all__ = [
    "MODES",
    "DrawnInstance",
    "GridMaskDecoder",
    "GridSettings",
    "InstanceDrawer",
    "InstanceOptions",
    "InstanceSegmenter",
    "PredictorPointDecoder",
    "RequestedBox",
    "box_proposals",
    "coarse_to_fine",
    "compose",
    "generate",
    "grid_points",
    "instance_f1_per_class",
    "match_instances",
    "on_flat_background",
    "semantic_proposals",
]

# All imported on first use (PEP 562), not here: all but :mod:`.metrics` (scipy) import torch and
# segment_anything, and importing :mod:`.metrics` alone should not load them.
_LAZY = {
    "InstanceDrawer": ".drawing",
    "GridMaskDecoder": ".grid_decoder",
    "DrawnInstance": ".instance_label",
    "compose": ".instance_label",
    "GridSettings": ".mask_generator",
    "PredictorPointDecoder": ".mask_generator",
    "coarse_to_fine": ".mask_generator",
    "generate": ".mask_generator",
    "grid_points": ".mask_generator",
    "on_flat_background": ".mask_generator",
    "instance_f1_per_class": ".metrics",
    "match_instances": ".metrics",
    "RequestedBox": ".proposals",
    "box_proposals": ".proposals",
    "semantic_proposals": ".proposals",
    "MODES": ".segmenter",
    "InstanceOptions": ".segmenter",
    "InstanceSegmenter": ".segmenter",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
