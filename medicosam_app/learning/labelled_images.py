"""Images with accepted (final) labels: what the semantic decoder and the interactive finetuning learn from.

The server asks MONAI Label's datastore; the command line reads a local datastore folder with MONAI
Label's layout (``DIR/<id>.nii.gz`` and ``DIR/labels/final/<id>.nii.gz``). Both give the same list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

from ..embeddings.precompute import VOLUME_SUFFIXES, find_images
from ..errors import MedicoSamError
from ..geometry.volume import Volume, read_label, read_volume
from ..model.checkpoints import file_xxh128


@dataclass(frozen=True)
class LabelledImage:
    image_id: str
    image_path: Path
    label_path: Path

    @property
    def label_hash(self) -> str:
        """Identifies this label's content: a re-saved, corrected label counts as new."""
        stat = self.label_path.stat()
        return _hash_of(str(self.label_path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _hash_of(path: str, size: int, mtime_ns: int) -> str:
    """Cached per (path, size, mtime): the new-label count runs after every label save."""
    return file_xxh128(path)


def image_id_of(path: Path) -> str:
    name = path.name
    for suffix in VOLUME_SUFFIXES + (".seg.nrrd",):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_labelled_images(studies: Path, tag: str = "final") -> List[LabelledImage]:
    """Images of a local datastore folder that have a label under ``labels/<tag>/``."""
    label_dir = Path(studies) / "labels" / tag
    labels = {}
    if label_dir.is_dir():
        for path in sorted(label_dir.iterdir()):
            if path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES + (".seg.nrrd",)):
                labels.setdefault(image_id_of(path), path)
    return [
        LabelledImage(image_id_of(image), image, labels[image_id_of(image)])
        for image in find_images(Path(studies))
        if image_id_of(image) in labels
    ]


def unlabelled_images(studies: Path, tag: str = "final") -> List[Path]:
    labelled = {study.image_id for study in find_labelled_images(studies, tag)}
    return [image for image in find_images(Path(studies)) if image_id_of(image) not in labelled]


def read_labelled(studies: Sequence[LabelledImage], skipped: List[Tuple[str, str]]) -> Iterator[Tuple[LabelledImage, Volume, Volume]]:
    """Each study with its image and label read and checked (same voxel grid), one at a time; a study that
    cannot be used is added to ``skipped`` as ``(image_id, reason)`` and left out."""
    for study in studies:
        try:
            volume = read_volume(study.image_path)
            label = read_label(study.label_path)
        except MedicoSamError as error:
            skipped.append((study.image_id, str(error)))
            continue
        if label.shape != volume.shape:
            skipped.append((study.image_id, f"label shape {label.shape} differs from image shape {volume.shape}"))
            continue
        yield study, volume, label
