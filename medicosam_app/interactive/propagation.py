"""From prompted slices to a 3D mask: propagate slice by slice, stop where the model loses the object.

The slice axis is cut by the prompted slices into *segments*: a tail below the lowest prompted slice, a
gap between each pair of neighbouring prompted slices, and a tail above the highest. A tail is walked
outward from its prompted slice; a gap is filled from both of its ends at once, each end walking towards
the other. Every step prompts the next slice with the previous slice's mask (projected to a box, box and
logits, or an interior point) and keeps the new mask only while it overlaps the previous one enough and
the model's own predicted IoU is high enough.

Because each segment depends only on its end slices' prompts, a correction on one slice recomputes the
segments touching that slice and keeps the others (see :class:`PropagationState`).

A slice with background points only is a *correction*, not an end: when a walk reaches it, its points are
added to the prompt projected from the previous slice ("not this part"), which removes a leak there. A
segment's key includes the corrections inside it, so adding one recomputes just that segment.

``frame_step`` n > 1 (a long clip at a high frame rate) segments every n-th slice or frame of each walk; the ones
in between hold the mask of the segmented one before them in the walk, and are listed as *held*. Where a walk
stops, the held frames before the stop stay empty: where the object ended between them is not known.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy import ndimage

from ..runtime.cancellation import raise_if_cancelled
from ..errors import InvalidRequestError
from .prompts import SlicePrompt
from .propagation_settings import PropagationSettings

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SliceMask:
    """One slice's answer: boolean mask (display orientation), SAM's low-res logits, predicted IoU."""

    mask: np.ndarray
    logits: Optional[torch.Tensor]
    predicted_iou: float

    @property
    def nbytes(self) -> int:
        logits = 0 if self.logits is None else self.logits.element_size() * self.logits.nelement()
        return int(self.mask.nbytes) + logits


# segment(slice index, prompt, previous low-res logits or None) → SliceMask
SegmentSlice = Callable[[int, SlicePrompt, Optional[torch.Tensor]], SliceMask]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def stop_reason(previous: SliceMask, new: SliceMask, settings: PropagationSettings) -> Optional[str]:
    """Why the object ends at ``new`` (the slice after ``previous``), or None to go on."""
    if not new.mask.any():
        return "empty mask"
    overlap = mask_iou(previous.mask, new.mask)
    if overlap < settings.iou_threshold:
        return f"IoU with the previous slice {overlap:.2f} < {settings.iou_threshold}"
    if settings.min_predicted_iou > 0 and new.predicted_iou < settings.min_predicted_iou:
        return f"predicted IoU {new.predicted_iou:.2f} < {settings.min_predicted_iou}"
    return None


def project(previous: SliceMask, settings: PropagationSettings) -> Tuple[SlicePrompt, Optional[torch.Tensor]]:
    """The prompt for the next slice made from the previous slice's mask."""
    rows, cols = np.nonzero(previous.mask)
    if settings.projection == "points":
        # The most interior pixel: a click there is unambiguous even for a thin or curved structure.
        distance = ndimage.distance_transform_edt(np.pad(previous.mask, 1))[1:-1, 1:-1]
        row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
        return SlicePrompt(np.array([[col, row]], dtype=float), np.array([1]), None), None
    height, width = previous.mask.shape
    grow_x = (cols.max() - cols.min() + 1) * settings.box_extension
    grow_y = (rows.max() - rows.min() + 1) * settings.box_extension
    box = np.array(
        [
            max(cols.min() - grow_x, 0.0),
            max(rows.min() - grow_y, 0.0),
            min(cols.max() + grow_x, width - 1.0),
            min(rows.max() + grow_y, height - 1.0),
        ]
    )
    empty = SlicePrompt(np.zeros((0, 2)), np.zeros(0, dtype=int), box)
    return empty, previous.logits if settings.projection == "mask" else None


@dataclass
class SegmentResult:
    """The slices one segment filled, and why each walking end stopped (None: it reached its end)."""

    masks: Dict[int, SliceMask] = field(default_factory=dict)
    stops: Dict[str, Optional[str]] = field(default_factory=dict)
    held: List[int] = field(default_factory=list)  # slices given the previous mask (frame_step > 1)


@dataclass
class PropagationState:
    """What a previous run computed, by segment key; a new run reuses every segment whose ends are unchanged."""

    prompted: Dict[Tuple, SliceMask] = field(default_factory=dict)
    segments: Dict[Tuple, SegmentResult] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Memory held by the masks and logits (what bounds how many states a server keeps)."""
        masks = list(self.prompted.values()) + [m for s in self.segments.values() for m in s.masks.values()]
        return sum(m.nbytes for m in masks)


@dataclass
class PropagationResult:
    masks: Dict[int, SliceMask]
    prompted_slices: List[int]
    stops: Dict[str, Optional[str]]
    recomputed: List[int]  # slices decoded by this run (the rest came from the previous state)
    state: PropagationState
    settings: PropagationSettings
    corrected_slices: List[int] = field(default_factory=list)  # background-only slices the walks were given
    held_slices: List[int] = field(default_factory=list)  # slices that hold the previous mask (frame_step > 1)

    @property
    def slice_range(self) -> Tuple[int, int]:
        return min(self.masks), max(self.masks)

    @property
    def predicted_iou(self) -> Dict[int, float]:
        return {index: round(float(m.predicted_iou), 4) for index, m in sorted(self.masks.items())}

    @property
    def low_confidence_slices(self) -> List[int]:
        return [index for index, m in sorted(self.masks.items()) if m.predicted_iou < self.settings.low_confidence]


def _fingerprint(prompt: SlicePrompt) -> Tuple:
    box = None if prompt.box_xyxy is None else tuple(np.round(prompt.box_xyxy, 3))
    return tuple(map(tuple, np.round(prompt.points_xy, 3))), tuple(prompt.point_labels.tolist()), box


class Propagator:
    """Runs the propagation over slice indices with a ``segment`` function; knows nothing of volumes."""

    def __init__(self, segment: SegmentSlice, settings: PropagationSettings = PropagationSettings()) -> None:
        self.segment = segment
        self.settings = settings
        self._decoded: List[int] = []
        self._started = 0.0
        self._corrections: Dict[int, SlicePrompt] = {}

    def run(
        self,
        prompts: Dict[int, SlicePrompt],
        bounds: Tuple[int, int],
        state: Optional[PropagationState] = None,
        corrections: Optional[Dict[int, SlicePrompt]] = None,
    ) -> PropagationResult:
        """Segment the prompted slices, then propagate within ``bounds`` (inclusive); ``corrections``: background
        points of slices without a prompt of their own, added to the prompt where a walk reaches them."""
        low, high = bounds
        if not prompts:
            raise InvalidRequestError("No prompt: send at least one 'foreground' point or an 'roi' box.")
        self._corrections = dict(corrections or {})
        overlap = sorted(set(prompts) & set(self._corrections))
        if overlap:
            raise ValueError(f"slices {overlap} are both prompted and corrections")
        outside = [index for index in list(prompts) + list(self._corrections) if not low <= index <= high]
        if outside:
            raise InvalidRequestError(f"Prompts on slices {sorted(outside)} lie outside the ROI's slices {low}..{high}.")
        previous = state or PropagationState()
        fresh = PropagationState()
        self._decoded, self._started = [], time.perf_counter()

        anchors = sorted(prompts)
        keys = {index: (index, _fingerprint(prompts[index])) for index in anchors}
        masks: Dict[int, SliceMask] = {}
        for index in anchors:
            key = keys[index]
            if key in previous.prompted:
                mask = previous.prompted[key]
            else:
                mask = self._decode(index, prompts[index], None)
                if not mask.mask.any():
                    raise InvalidRequestError(
                        f"The model found nothing at the prompt on slice {index}; click inside the structure or draw a tighter box."
                    )
            fresh.prompted[key] = masks[index] = mask

        stops: Dict[str, Optional[str]] = {}
        held: List[int] = []
        segments = [("below", keys[anchors[0]], low, self._corrections_within(low, anchors[0] - 1))]
        segments += [("gap", keys[a], keys[b], self._corrections_within(a + 1, b - 1)) for a, b in zip(anchors, anchors[1:])]
        segments += [("above", keys[anchors[-1]], high, self._corrections_within(anchors[-1] + 1, high))]
        for segment_key in segments:
            result = previous.segments.get(segment_key)
            if result is None:
                result = self._fill(segment_key, masks)
            fresh.segments[segment_key] = result
            masks.update(result.masks)
            held += result.held
            for end, reason in result.stops.items():
                if reason is not None:
                    stops[end] = reason
        for end in ("below", "above"):
            stops.setdefault(end, None)
        return PropagationResult(
            masks, anchors, stops, sorted(self._decoded), fresh, self.settings, sorted(self._corrections), sorted(held)
        )

    def _corrections_within(self, first: int, last: int) -> Tuple:
        """The corrections on slices ``first..last`` as a hashable fingerprint (part of a segment's key)."""
        return tuple(
            (index, _fingerprint(prompt)) for index, prompt in sorted(self._corrections.items()) if first <= index <= last
        )

    def _fill(self, segment_key: Tuple, masks: Dict[int, SliceMask]) -> SegmentResult:
        kind = segment_key[0]
        result = SegmentResult()
        if kind == "below":
            start = segment_key[1][0]
            result.stops["below"] = self._walk(start, -1, segment_key[2] - 1, masks[start], result)
        elif kind == "above":
            start = segment_key[1][0]
            result.stops["above"] = self._walk(start, +1, segment_key[2] + 1, masks[start], result)
        else:
            a, b = segment_key[1][0], segment_key[2][0]
            self._fill_gap(a, b, masks[a], masks[b], result)
        return result

    def _walk(self, start: int, step: int, end: int, first: SliceMask, out: SegmentResult) -> Optional[str]:
        """From ``start`` (exclusive) towards ``end`` (exclusive), every ``frame_step``-th slice segmented and the
        last one before ``end`` always; returns why it stopped, or None."""
        current, done = first, start
        while (end - (done + step)) * step > 0:  # a slice is left before the end
            index = self._next(done, step, end - step)
            new, reason = self._step(index, current)
            if reason is not None:
                return f"slice {index}: {reason}"
            self._hold(current, range(done + step, index, step), out)
            out.masks[index] = current = new
            done = index
        return None

    def _next(self, done: int, step: int, last: int) -> int:
        """The next slice a walk segments after ``done``: ``frame_step`` further, but never past ``last`` (the
        last slice before its end) nor past a correction, which must be decoded to take effect."""
        index = done + step * self.settings.frame_step
        if (index - last) * step > 0:
            index = last
        ahead = [c for c in self._corrections if (c - done) * step > 0 and (index - c) * step > 0]
        if ahead:
            index = min(ahead, key=lambda c: abs(c - done))
        return index

    @staticmethod
    def _hold(mask: SliceMask, indices: range, out: SegmentResult) -> None:
        """Slices skipped by ``frame_step`` keep ``mask`` (without logits: nothing refines from them)."""
        for index in indices:
            out.masks[index] = SliceMask(mask.mask, None, mask.predicted_iou)
            out.held.append(index)

    def _fill_gap(self, a: int, b: int, from_a: SliceMask, from_b: SliceMask, out: SegmentResult) -> None:
        """Both ends walk towards each other, one slice each in turn; an end that stops leaves the rest to the other."""
        lower, upper = a + 1, b - 1
        ends = {"up": from_a, "down": from_b}
        alive = {"up": True, "down": True}
        while lower <= upper and (alive["up"] or alive["down"]):
            for direction in ("up", "down"):
                if not alive[direction] or lower > upper:
                    continue
                index = self._next(lower - 1, +1, upper) if direction == "up" else self._next(upper + 1, -1, lower)
                new, reason = self._step(index, ends[direction])
                if reason is not None:
                    alive[direction] = False
                    out.stops[f"gap {a}-{b} from {a if direction == 'up' else b}"] = f"slice {index}: {reason}"
                    continue
                if direction == "up":
                    self._hold(ends["up"], range(lower, index), out)
                    lower = index + 1
                else:
                    self._hold(ends["down"], range(index + 1, upper + 1), out)
                    upper = index - 1
                out.masks[index] = ends[direction] = new

    def _step(self, index: int, previous: SliceMask) -> Tuple[SliceMask, Optional[str]]:
        raise_if_cancelled()  # between slices: a client that hung up stops a 2000-slice walk here
        prompt, logits = project(previous, self.settings)
        correction = self._corrections.get(index)
        if correction is not None:
            prompt = SlicePrompt(
                np.concatenate([prompt.points_xy, correction.points_xy]).reshape(-1, 2),
                np.concatenate([prompt.point_labels, correction.point_labels]).astype(int),
                prompt.box_xyxy,
            )
        new = self._decode(index, prompt, logits)
        return new, stop_reason(previous, new, self.settings)

    def _decode(self, index: int, prompt: SlicePrompt, logits: Optional[torch.Tensor]) -> SliceMask:
        mask = self.segment(index, prompt, logits)
        self._decoded.append(index)
        if len(self._decoded) % 10 == 0:
            rate = len(self._decoded) / max(time.perf_counter() - self._started, 1e-9)
            logger.info("Propagation: %d slices segmented (%.2f slices/s), now at slice %d", len(self._decoded), rate, index)
        return mask
