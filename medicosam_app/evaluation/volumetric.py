"""3D evaluation: prompt an object on its middle slice, propagate as the server does, Dice in 3D."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import numpy as np

from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import InvalidRequestError
from ..geometry.coordinates import SliceView
from ..geometry.volume import Volume
from ..interactive.prompts import SlicePrompt
from ..interactive.propagation import Propagator
from ..interactive.propagation_settings import PropagationSettings
from ..interactive.volume_segmenter import slice_segmenter
from .clicks import first_click, mask_box
from .objects import VolumeObject
from .session import dice


@dataclass(frozen=True)
class VolumeTrace:
    start: str
    prompt_slice: int
    dice: float
    slices_truth: int  # slices the object spans
    slices_predicted: int
    stopped: Dict[str, Any]


def prompt_slice(mask: np.ndarray, view: SliceView) -> int:
    """The middle of the object's slice range; where the object skips that slice (a C shape), the nearest
    slice that shows it."""
    in_plane = tuple(a for a in (0, 1, 2) if a != view.axis)
    present = np.flatnonzero(np.any(mask, axis=in_plane))
    middle = (int(present[0]) + int(present[-1])) // 2
    return int(present[np.argmin(np.abs(present - middle))])


def evaluate_volume_object(
    obj: VolumeObject,
    volume: Volume,
    view: SliceView,
    embedder: SliceEmbedder,
    predictor: Any,
    start: str,
    settings: PropagationSettings = PropagationSettings(),
) -> VolumeTrace:
    index = prompt_slice(obj.mask, view)
    plane = np.ascontiguousarray(view.extract(obj.mask, index))
    if start == "box":
        prompt = SlicePrompt(np.zeros((0, 2)), np.zeros(0, dtype=int), mask_box(plane))
    else:
        click = first_click(plane)
        prompt = SlicePrompt(np.array([[click.x, click.y]], dtype=float), np.array([1]), None)
    segment = slice_segmenter(embedder, predictor, volume, view, {})
    predicted = np.zeros(volume.shape, dtype=bool)
    stopped: Dict[str, Any] = {}
    try:
        result = Propagator(segment, settings).run({index: prompt}, (0, view.num_slices - 1))
    except InvalidRequestError:  # the model found nothing at the prompt: Dice 0, as for an annotator
        stopped = {"below": "nothing found at the prompt", "above": "nothing found at the prompt"}
    else:
        for i, answer in result.masks.items():
            view.paste(answer.mask, predicted, i)
        stopped = dict(result.stops)
    in_plane = tuple(a for a in (0, 1, 2) if a != view.axis)
    return VolumeTrace(
        start=start,
        prompt_slice=index,
        dice=dice(predicted, obj.mask),
        slices_truth=int(np.any(obj.mask, axis=in_plane).sum()),
        slices_predicted=int(np.any(predicted, axis=in_plane).sum()),
        stopped=stopped,
    )
