"""Training objects: each connected component of each class on chosen slices, with its slice's cached
embedding key. The evaluation's objects, so training and the gate see the same kind of thing."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..embeddings.key import EmbeddingKey
from ..embeddings.slice_embedder import SliceEmbedder
from ..geometry.packed_slice import PackedSlice
from ..evaluation.objects import foreground_slices, slice_objects
from ..learning.labelled_images import LabelledImage, read_labelled

logger = logging.getLogger(__name__)


class ObjectSample:
    """One object to train on: its image, slice, the slice's embedding key, and its mask (kept packed: training
    holds every object of every labelled image)."""

    __slots__ = ("image_id", "slice_index", "key", "packed", "image")

    def __init__(self, image_id: str, slice_index: int, key: EmbeddingKey, mask: np.ndarray,
                 image: Optional[np.ndarray] = None) -> None:
        self.image_id = image_id
        self.slice_index = slice_index
        self.key = key
        self.packed = PackedSlice.of(np.asarray(mask, bool))
        self.image = image  # (H, W, 3) uint8 as the encoder receives it, kept only when the encoder trains

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, display orientation."""
        return self.packed.unpack()

    @property
    def original_size(self) -> Tuple[int, int]:
        return self.packed.shape


def prepare_objects(
    studies: Sequence[LabelledImage],
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
    # One volume in memory at a time: its objects are packed and its slices embedded before the next is read.
    with tqdm(unit="slice", desc="Encoder features", disable=not progress) as bar:
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
            del objects
            batch = embedder.batch_size()  # the encoder's (measured on a GPU, 1 on a CPU)
            for start in range(0, 0 if keep_images else len(used), batch):
                embedder.encode_into_cache(volume, view, used[start : start + batch])
                bar.update(len(used[start : start + batch]))
    for image_id, reason in skipped:
        logger.warning("Not finetuning on %s: %s", image_id, reason)
    return samples, skipped
