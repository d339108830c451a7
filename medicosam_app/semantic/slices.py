"""Training slices: which slices of each labelled image to learn from, their targets, their cached features.

Features are the frozen encoder's embeddings, the same ones clicks use, cached on disk by
:class:`SliceEmbedder`. A later training round therefore only encodes images it has not seen before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..embeddings.key import EmbeddingKey
from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import MedicoSamError
from ..geometry.coordinates import SamFrame, SliceView
from ..geometry.packed_slice import PackedSlice
from .classes import SemanticClasses
from ..learning.labelled_images import LabelledImage, read_labelled

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceSample:
    """One display-orientation slice: where its features are cached and its class-index target (kept packed:
    training holds every chosen slice of every labelled image)."""

    image_id: str
    index: int
    key: EmbeddingKey
    packed_target: PackedSlice

    @property
    def target(self) -> np.ndarray:
        """(H, W) uint8 class indices."""
        return self.packed_target.unpack()


def choose_slices(label: np.ndarray, view: SliceView, max_slices: int) -> List[int]:
    """Every slice with foreground plus one empty slice per four (the model must also learn "nothing"),
    thinned evenly to at most ``max_slices``."""
    in_plane = tuple(a for a in (0, 1, 2) if a != view.axis)
    has_foreground = np.any(label > 0, axis=in_plane)
    foreground = [int(i) for i in np.flatnonzero(has_foreground)]
    empty = [int(i) for i in np.flatnonzero(~has_foreground)]
    chosen = sorted(foreground + empty[::4])
    if max_slices > 0 and len(chosen) > max_slices:
        picks = np.linspace(0, len(chosen) - 1, max_slices).round().astype(int)
        chosen = [chosen[i] for i in sorted(set(picks))]
    return chosen


def prepare_samples(
    studies: Sequence[LabelledImage],
    classes: SemanticClasses,
    embedder: SliceEmbedder,
    axis: int = 2,
    max_slices_per_image: int = 64,
    encode_share: Tuple[int, int] = (0, 1),
    progress: bool = True,
) -> Tuple[List[SliceSample], List[Tuple[str, str]]]:
    """Read images and labels, pick slices, make sure their features are cached.

    ``encode_share=(rank, world)`` splits the encoding between training processes; every process
    returns all samples. Returns the samples and the ``(image_id, reason)`` of studies skipped.
    """
    rank, world = encode_share
    samples: List[SliceSample] = []
    skipped: List[Tuple[str, str]] = []
    position = 0  # over every chosen slice of every image: this process encodes those at rank, rank + world, …
    # One volume in memory at a time: its targets are packed and its share of slices embedded before the next.
    with tqdm(unit="slice", desc="Encoder features", disable=not progress) as bar:
        for study, volume, label in read_labelled(studies, skipped):
            view = volume.configured_view(axis)
            indices = choose_slices(label.array, view, max_slices_per_image)
            targets = classes.to_indices(label.array)
            for index in indices:
                target = PackedSlice.of(np.ascontiguousarray(view.extract(targets, index)).astype(np.uint8))
                samples.append(SliceSample(study.image_id, index, embedder.key(volume, view, index), target))
            del targets
            mine = [index for offset, index in enumerate(indices, position) if offset % world == rank]
            position += len(indices)
            batch = embedder.batch_size()  # the encoder's (measured on a GPU, 1 on a CPU)
            for start in range(0, len(mine), batch):
                embedder.encode_into_cache(volume, view, mine[start : start + batch])
                bar.update(len(mine[start : start + batch]))
    for image_id, reason in skipped:
        logger.warning("Not training on %s: %s", image_id, reason)
    return samples, skipped


class SliceFeatures(torch.utils.data.Dataset):
    """(features (C, 64, 64), target (H, W), position) per sample, features read from the embedding cache."""

    def __init__(self, samples: Sequence[SliceSample], embedder: SliceEmbedder) -> None:
        self.samples = list(samples)
        self.embedder = embedder

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, position: int):
        sample = self.samples[position]
        embedding, _ = self.embedder.embeddings.get_or_encode(sample.key, lambda: _missing(sample))
        return embedding.features[0], torch.from_numpy(sample.target.astype(np.int64)), position


def collate(batch: Iterable) -> Tuple[torch.Tensor, List[torch.Tensor], List[int]]:
    """Stack the features (all 64×64); keep targets as a list since slices differ in size."""
    features, targets, positions = zip(*batch)
    return torch.stack(features), list(targets), list(positions)


def input_size(original_size: Tuple[int, int], image_size: int) -> Tuple[int, int]:
    return SamFrame(tuple(original_size), image_size).input_size  # type: ignore[arg-type]


def _missing(sample: SliceSample):
    raise MedicoSamError(
        f"Features of {sample.image_id} slice {sample.index} vanished from the embedding cache during training; "
        "raise embedding_disk_mb so the training set fits."
    )
