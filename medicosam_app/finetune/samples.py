"""Training objects: each connected component of each class on chosen slices, with its slice's cached
embedding key. The evaluation's objects, so training and the gate see the same kind of thing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..embeddings.key import EmbeddingKey
from ..embeddings.slice_embedder import SliceEmbedder
from ..evaluation.objects import foreground_slices, slice_objects
from ..semantic.studies import LabelledStudy, read_labelled

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectSample:
    image_id: str
    slice_index: int
    key: EmbeddingKey
    mask: np.ndarray  # (H, W) bool, display orientation
    image: Optional[np.ndarray] = None  # (H, W, 3) uint8 as the encoder receives it, kept when the encoder trains

    @property
    def original_size(self) -> Tuple[int, int]:
        return tuple(self.mask.shape)  # type: ignore[return-value]


def prepare_objects(
    studies: Sequence[LabelledStudy],
    classes: Dict[str, int],
    embedder: SliceEmbedder,
    axis: int = 2,
    max_slices_per_image: int = 32,
    max_objects_per_slice: int = 8,
    progress: bool = True,
    keep_images: bool = False,
) -> Tuple[List[ObjectSample], List[Tuple[str, str]]]:
    """Read images and labels, pick slices and objects, make sure the slices' embeddings are cached (or, with
    ``keep_images``, keep the slices themselves for an encoder that trains).
    Returns the objects and the ``(image_id, reason)`` of studies skipped."""
    samples: List[ObjectSample] = []
    skipped: List[Tuple[str, str]] = []
    work = []
    for study, volume, label in read_labelled(studies, skipped):
        view = volume.configured_view(axis)
        slices = foreground_slices(np.isin(label.array, list(classes.values())), view, max_slices_per_image)
        objects = slice_objects(study.image_id, label.array, view, classes, slices)
        used = []
        for index in slices:
            on_slice = sorted((o for o in objects if o.slice_index == index), key=lambda o: -o.pixels)
            image = embedder.slice_rgb(volume, view, index) if keep_images and on_slice else None  # one per slice
            for obj in on_slice[:max_objects_per_slice]:
                samples.append(ObjectSample(study.image_id, index, embedder.key(volume, view, index), obj.mask, image))
            if on_slice:
                used.append(index)
        work.append((volume, view, [] if keep_images else used))
    for image_id, reason in skipped:
        logger.warning("Not finetuning on %s: %s", image_id, reason)
    with tqdm(total=sum(len(u) for _, _, u in work), unit="slice", desc="Encoder features", disable=not progress) as bar:
        for volume, view, used in work:
            for index in used:
                embedder.encode_into_cache(volume, view, [index])
                bar.update(1)
    return samples, skipped
