"""Encode every slice of a datastore ahead of time (overnight), so the first click of the day is instant."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..errors import MedicoSamError
from ..geometry.volume import image_size, read_volume
from .slice_embedder import SliceEmbedder

logger = logging.getLogger(__name__)

# Image files of a datastore folder: volumes, pictures (PNG, JPEG, TIFF) and single DICOM files.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


def find_images(studies: Path) -> List[Path]:
    """The image files of a local MONAI Label datastore: image files at the top of the folder.

    Labels live in ``labels/`` below it and are not images; a single file is accepted as it is.
    """
    studies = Path(studies)
    if studies.is_file():
        return [studies]
    if not studies.is_dir():
        raise FileNotFoundError(f"{studies} is neither an image file nor a folder of images")
    return sorted(
        path for path in studies.iterdir()
        if path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES) and not path.name.endswith(".seg.nrrd")
    )


@dataclass(frozen=True)
class Shard:
    """One of ``count`` disjoint parts of a datastore: several machines (or one process per GPU) each embed
    a shard into the one shared disk cache. An image belongs to shard ``hash(name) % count``, so the split
    stays the same when images are added and every process agrees on it without talking to the others."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a shard is I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"``, e.g. ``"0/4"`` for the first of four."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard takes I/N, e.g. 0/4 (the first of four shards), not {text!r}") from None
        return cls(index, count)

    @classmethod
    def from_torchrun(cls) -> "Shard":
        """Under torchrun: this process's rank of the world size (one shard per process, and per GPU)."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def contains(self, image: Path) -> bool:
        digest = hashlib.sha256(Path(image).name.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def select(self, images: Sequence[Path]) -> List[Path]:
        return [image for image in images if self.contains(image)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class PrecomputeSummary:
    images: int = 0
    slices: int = 0
    encoded: int = 0
    seconds: float = 0.0
    failed: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def already_cached(self) -> int:
        return self.slices - self.encoded

    def line(self) -> str:
        text = (
            f"{self.images} images, {self.slices} slices: {self.encoded} encoded, {self.already_cached} already cached"
            f" in {self.seconds:.1f} s"
        )
        if self.failed:
            text += f"; {len(self.failed)} images skipped ({', '.join(name for name, _ in self.failed)})"
        return text


def _slices_in_header(path: Path, axes: Sequence[int]) -> int:
    """Slices along ``axes`` as the file header states them (0 when the header cannot be read)."""
    try:
        size = image_size(path)
    except MedicoSamError:
        return 0
    return sum(size[axis] for axis in axes)


def precompute(
    images: Sequence[Path],
    embedder: SliceEmbedder,
    axes: Iterable[int] = (2,),
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> PrecomputeSummary:
    """Encode the slices of ``images`` along ``axes`` into the embedder's caches (memory budget permitting,
    and on disk). Unreadable images are reported in the summary and skipped.

    Images are read one ahead of the encoder (a datastore of hundreds of CTs does not fit in memory); the progress
    bar's total comes from the file headers alone. ``batch_size``: slices per encoder pass (default: the
    encoder's, measured on a GPU, see model/batch_choice.py).
    """
    batch_size = max(1, batch_size or embedder.batch_size())
    started = time.perf_counter()
    summary = PrecomputeSummary()
    axes = tuple(axes)
    total = sum(_slices_in_header(path, axes) for path in images)
    with tqdm(total=total or None, unit="slice", desc="Encoding", disable=not progress) as bar, \
            ThreadPoolExecutor(1, "precompute-reader") as reader:
        # The next image is read (and its DICOM decoded) while this one is encoded: the encoder never waits for the
        # disk between images. At most two volumes are in memory.
        upcoming = reader.submit(read_volume, images[0]) if images else None
        for number, path in enumerate(images):
            reading, upcoming = upcoming, (reader.submit(read_volume, images[number + 1]) if number + 1 < len(images) else None)
            try:
                volume = reading.result()
            except MedicoSamError as error:
                summary.failed.append((path.name, str(error)))
                logger.warning("Skipping %s: %s", path.name, error)
                continue
            summary.images += 1
            # A picture or clip has frames along k only, whatever axes are asked for the volumes beside it.
            try:
                for axis in axes if volume.layout == "volume" else [2]:
                    view = volume.view(axis)
                    bar.set_postfix_str(f"{path.name} axis {axis}")
                    for start in range(0, view.num_slices, batch_size):
                        indices = list(range(start, min(start + batch_size, view.num_slices)))
                        summary.encoded += embedder.encode_into_cache(volume, view, indices)
                        summary.slices += len(indices)
                        bar.update(len(indices))
            except MedicoSamError as error:  # e.g. a CT window asked of a colour photograph: that image only
                summary.images -= 1
                summary.failed.append((path.name, str(error)))
                logger.warning("Skipping %s: %s", path.name, error)
            del volume  # two volumes in memory at most: this one goes before the one after the next is read
    embedder.embeddings.flush()  # the last slices' writes are part of the work
    summary.seconds = time.perf_counter() - started
    return summary
