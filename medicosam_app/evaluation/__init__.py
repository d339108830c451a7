"""How well the interactive model serves a site's own data: simulated annotators, Dice per click, NoC."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

from .report import result_document, table, write_csv

if TYPE_CHECKING:
    from .clicks import Click, LargestErrorCentre, RandomErrorClicks, box_ring, deepest_pixel, first_click, mask_box
    from .objects import components, foreground_slices, slice_objects, volume_objects
    from .runner import EvaluationResult, EvaluationSettings, Evaluator
    from .session import dice, simulate

__all__ = [
    "Click",
    "EvaluationResult",
    "EvaluationSettings",
    "Evaluator",
    "LargestErrorCentre",
    "RandomErrorClicks",
    "box_ring",
    "components",
    "deepest_pixel",
    "dice",
    "first_click",
    "foreground_slices",
    "mask_box",
    "result_document",
    "simulate",
    "slice_objects",
    "table",
    "volume_objects",
    "write_csv",
]

# Imported on first use (PEP 562), not here: these modules import scipy, and most of them torch and
# segment_anything, which :mod:`.report` (numpy alone) does without.
_LAZY = {
    "Click": ".clicks",
    "LargestErrorCentre": ".clicks",
    "RandomErrorClicks": ".clicks",
    "box_ring": ".clicks",
    "deepest_pixel": ".clicks",
    "first_click": ".clicks",
    "mask_box": ".clicks",
    "components": ".objects",
    "foreground_slices": ".objects",
    "slice_objects": ".objects",
    "volume_objects": ".objects",
    "EvaluationResult": ".runner",
    "EvaluationSettings": ".runner",
    "Evaluator": ".runner",
    "dice": ".session",
    "simulate": ".session",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
