"""Runs the simulated annotators over every labelled image and gathers their traces.

Embeddings come from the shared :class:`SliceEmbedder` (the server's disk cache), so evaluating after a
``precompute`` or after the annotators' own clicks encodes nothing again. The predictor is a parameter:
the served model, a second checkpoint, or a finetuning candidate that shares the frozen encoder.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import InvalidRequestError
from ..geometry.volume import Volume
from ..model.predictor import PromptPredictor
from ..learning.labelled_images import LabelledImage, read_labelled
from .clicks import PROTOCOLS, STARTS, correction_rule
from .objects import MIN_OBJECT_PIXELS, SliceObject, foreground_slices, slice_objects, volume_objects
from .session import DEFAULT_ITERATIONS, DEFAULT_THRESHOLDS, MAX_CLICKS, ObjectTrace, simulate
from .volumetric import evaluate_volume_object

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    protocol: str = "medicosam"
    starts: Tuple[str, ...] = STARTS
    iterations: int = DEFAULT_ITERATIONS  # predictions reported per object: the first prompt + corrections
    thresholds: Tuple[float, ...] = DEFAULT_THRESHOLDS  # for NoC
    max_clicks: int = MAX_CLICKS
    mask_prompt: bool = False  # feed the previous logits back with each correction
    axis: int = 2
    max_slices_per_image: int = 16  # 2D: foreground slices per image, evenly spread (0: all)
    min_object_pixels: int = MIN_OBJECT_PIXELS
    volumetric: bool = True  # also prompt each 3D object on its middle slice and propagate
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidRequestError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}.")
        unknown = [s for s in self.starts if s not in STARTS]
        if not self.starts or unknown:
            raise InvalidRequestError(f"start must be box and/or point, not {', '.join(unknown) or 'nothing'}.")
        if not 1 <= self.iterations <= 50:
            raise InvalidRequestError(f"iterations must lie in 1..50, not {self.iterations}.")
        if not 1 <= self.max_clicks <= 100:
            raise InvalidRequestError(f"max_clicks must lie in 1..100, not {self.max_clicks}.")
        if any(not 0.0 < t <= 1.0 for t in self.thresholds):
            raise InvalidRequestError(f"NoC thresholds must lie in (0, 1], not {list(self.thresholds)}.")
        if self.axis not in (0, 1, 2):
            raise InvalidRequestError(f"axis must be 0, 1 or 2, not {self.axis}.")


@dataclass
class ObjectResult:
    """One object under one opening prompt. 2D: Dice and prompt count per iteration, NoC per threshold.
    3D: one Dice after propagation from the prompted slice."""

    image_id: str
    dimension: str  # "2d" or "3d"
    class_name: str
    component: int
    start: str
    slice_index: int  # 2D: the object's slice; 3D: the prompted slice
    size: int  # pixels (2D) or voxels (3D)
    dice: List[float]
    prompts: List[int] = field(default_factory=list)
    noc: Dict[str, int] = field(default_factory=dict)  # "90" → prompts
    reached: Dict[str, bool] = field(default_factory=dict)
    detail: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class EvaluationResult:
    settings: EvaluationSettings
    model: Dict[str, Any]
    objects: List[ObjectResult]
    images: List[str]
    skipped: List[Tuple[str, str]]
    seconds: float


def threshold_key(threshold: float) -> str:
    """0.9 → "90", 0.85 → "85": how NoC@90 is written."""
    return f"{threshold * 100:g}"


def object_rng(seed: int, *parts: Any) -> np.random.Generator:
    """A generator of its own per object and opening prompt, so an object's clicks do not depend on which
    objects came before it (a second checkpoint, or a re-run on more images, sees the same draws)."""
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, parts)).encode())])


class Evaluator:
    """Simulated annotation of labelled images with one predictor."""

    def __init__(self, embedder: SliceEmbedder, predictor: Optional[PromptPredictor] = None, model: Optional[Dict[str, Any]] = None) -> None:
        self.embedder = embedder
        self._predictor = predictor
        self.model = model or {}

    @property
    def predictor(self) -> PromptPredictor:
        return self._predictor if self._predictor is not None else self.embedder.predictor()

    def run(
        self,
        studies: Sequence[LabelledImage],
        classes: Dict[str, int],
        settings: EvaluationSettings = EvaluationSettings(),
        progress: bool = True,
    ) -> EvaluationResult:
        started = time.perf_counter()
        results: List[ObjectResult] = []
        skipped: List[Tuple[str, str]] = []
        done_images: List[str] = []
        with tqdm(total=0, unit="object", desc=f"Evaluating ({settings.protocol})", disable=not progress) as bar:
            for study, volume, label in read_labelled(studies, skipped):
                results += self._image(study.image_id, volume, label.array, classes, settings, bar)
                done_images.append(study.image_id)
        for image_id, reason in skipped:
            logger.warning("Not evaluating %s: %s", image_id, reason)
        return EvaluationResult(settings, self.model, results, done_images, skipped, time.perf_counter() - started)

    def _image(
        self, image_id: str, volume: Volume, label: np.ndarray, classes: Dict[str, int], settings: EvaluationSettings, bar: tqdm
    ) -> List[ObjectResult]:
        uncovered = sorted(set(np.unique(label).tolist()) - set(classes.values()) - {0})
        if uncovered:
            logger.warning("%s: label values %s belong to no class of %s and are not evaluated (set --labels)",
                           image_id, uncovered, classes)
        view = volume.configured_view(settings.axis)
        slices = foreground_slices(np.isin(label, list(classes.values())), view, settings.max_slices_per_image)
        objects = slice_objects(image_id, label, view, classes, slices, settings.min_object_pixels)
        # Propagation needs neighbours: slices of a volume or frames of a clip. A 2D picture (or a stack of separate
        # ones) has none; its "3D" figures would only repeat the 2D ones.
        propagates = volume.layout in ("volume", "cine")
        objects_3d = volume_objects(image_id, label, classes, settings.min_object_pixels) if settings.volumetric and propagates else []
        bar.total += (len(objects) + len(objects_3d)) * len(settings.starts)
        bar.refresh()
        rule = correction_rule(settings.protocol)
        predictor = self.predictor
        results = []
        for index in slices:
            on_slice = [o for o in objects if o.slice_index == index]
            if not on_slice:
                continue
            embedding, _ = self.embedder.embedding(volume, view, index, predictor)  # that predictor's encoder

            def decode(points, labels, box, logits):
                answer = predictor.predict(embedding, points, labels, box, mask_logits=logits)
                return answer.mask, answer.low_res_logits

            for obj in on_slice:
                for start in settings.starts:
                    trace = simulate(
                        decode, obj.mask, start, rule, object_rng(settings.seed, obj.name, start),
                        settings.iterations, settings.thresholds, settings.max_clicks, settings.mask_prompt,
                    )
                    results.append(_slice_result(obj, trace, settings))
                    bar.update(1)
        for obj in objects_3d:
            for start in settings.starts:
                trace = evaluate_volume_object(obj, volume, view, self.embedder, predictor, start)
                results.append(ObjectResult(
                    image_id, "3d", obj.class_name, obj.component, start, trace.prompt_slice, int(obj.mask.sum()),
                    [trace.dice], detail={"slices_truth": trace.slices_truth, "slices_predicted": trace.slices_predicted,
                                          "stopped": trace.stopped},
                ))
                bar.update(1)
        return results


def _slice_result(obj: SliceObject, trace: ObjectTrace, settings: EvaluationSettings) -> ObjectResult:
    noc, reached = {}, {}
    for threshold in settings.thresholds:
        noc[threshold_key(threshold)], reached[threshold_key(threshold)] = trace.noc(threshold, settings.max_clicks)
    return ObjectResult(
        obj.image_id, "2d", obj.class_name, obj.component, trace.start, obj.slice_index, obj.pixels,
        [round(d, 6) for d in trace.dice], list(trace.prompts), noc, reached,
        detail={"clicks": [[c.x, c.y, int(c.positive)] for c in trace.clicks]},
    )
