"""Where MedicoSAM weights come from: the published files, a local path, or a verified download.

The published files are identified by their xxh128 hash (the only hash the authors publish). A file with
another hash is accepted as a custom finetune, with a warning that the server shows in ``/info``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import xxhash
from tqdm import tqdm

from ..errors import CheckpointError, ModelUnavailableError

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "MEDICOSAM_CHECKPOINT"
CACHE_DIR_ENV = "MEDICOSAM_CACHE_DIR"
_CHUNK = 1 << 20
_STREAM_CHUNK = 1 << 16  # small, so a dropped connection loses little

# Called with (bytes so far, total bytes or None) while a download runs.
DownloadProgress = Callable[[int, Optional[int]], None]


@dataclass(frozen=True)
class PublishedWeights:
    """A weights file as its authors published it."""

    filename: str
    url: str
    xxh128: str
    description: str


MEDICOSAM_VIT_B = PublishedWeights(
    filename="vit_b_medicosam.pt",
    url="https://owncloud.gwdg.de/index.php/s/f5Ol4FrjPQWfjUF/download",
    xxh128="40169f1e3c03a4b67bff58249c176d92",
    description="MedicoSAM ViT-B v2 (micro-sam: vit_b_medical_imaging)",
)
MEDICOSAM_DECODER = PublishedWeights(
    filename="vit_b_medicosam_decoder.pt",
    url="https://owncloud.gwdg.de/index.php/s/ahd3ZhZl2e0RIwz/download",
    xxh128="9e498b12f526f119b96c88be76e3b2ed",
    description="MedicoSAM v2 UNETR decoder (initialisation for semantic models)",
)


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint file on disk, with what we know about where it came from."""

    path: Path
    xxh128: str
    source: str  # "path" (configured), "cache" or "download"
    official: bool
    warning: Optional[str] = None


def default_cache_dir() -> Path:
    """``$MEDICOSAM_CACHE_DIR``, else ``~/.cache/medicosam``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "medicosam")


def file_xxh128(path: os.PathLike, show_progress: bool = False) -> str:
    """The xxh128 hex digest of a file, read in chunks."""
    path = Path(path)
    digest = xxhash.xxh128()
    with open(path, "rb") as f, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"hashing {path.name}", disable=not show_progress
    ) as bar:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def how_to_provide(weights: PublishedWeights, cache_dir: Path) -> str:
    """The sentence that tells an admin how to get the weights onto an offline machine."""
    return (
        f"Download {weights.filename} ({weights.description}) from {weights.url} "
        f"(xxh128 {weights.xxh128}) and put it at {cache_dir / weights.filename}, "
        f"or point ${CHECKPOINT_ENV} or '--conf checkpoint PATH' at the file."
    )


def resolve_checkpoint(
    weights: PublishedWeights = MEDICOSAM_VIT_B,
    path: Optional[os.PathLike] = None,
    cache_dir: Optional[os.PathLike] = None,
    allow_download: bool = True,
    on_progress: Optional[DownloadProgress] = None,
) -> ResolvedCheckpoint:
    """Find the checkpoint file: an explicit path, else the cache, else a verified download.

    ``on_progress(bytes_done, bytes_total_or_None)`` follows a download (the server shows it in ``/info``).

    Raises:
        CheckpointError: an explicit path that does not exist or is not a file.
        ModelUnavailableError: no file anywhere and no download possible; the message says what to do.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if path:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise CheckpointError(
                f"Checkpoint {explicit} does not exist or is not a file. " + how_to_provide(weights, cache)
            )
        return _describe(explicit, weights, source="path")

    cached = cache / weights.filename
    if cached.is_file():
        return _describe(cached, weights, source="cache")
    if not allow_download:
        raise ModelUnavailableError(f"No {weights.filename} in {cache} and downloads are off. " + how_to_provide(weights, cache))
    try:
        download_weights(weights, cached, on_progress=on_progress)
    except (OSError, CheckpointError) as error:
        raise ModelUnavailableError(f"Could not download {weights.filename}: {error}. " + how_to_provide(weights, cache)) from error
    return ResolvedCheckpoint(cached, weights.xxh128, source="download", official=True)


def _describe(path: Path, weights: PublishedWeights, source: str) -> ResolvedCheckpoint:
    digest = file_xxh128(path, show_progress=path.stat().st_size > 64 * _CHUNK)
    if digest == weights.xxh128:
        return ResolvedCheckpoint(path, digest, source, official=True)
    warning = (
        f"{path} is not the published {weights.filename} (xxh128 {digest}, published {weights.xxh128}); "
        "loading it as a custom finetune."
    )
    logger.warning(warning)
    return ResolvedCheckpoint(path, digest, source, official=False, warning=warning)


def download_weights(
    weights: PublishedWeights,
    destination: os.PathLike,
    retries: int = 3,
    timeout: float = 30.0,
    backoff_s: float = 2.0,
    on_progress: Optional[DownloadProgress] = None,
) -> Path:
    """Download ``weights`` to ``destination``, resuming a partial file, and verify its hash.

    The bytes go to ``<destination>.part`` and are renamed only once the hash matches, so a file at
    ``destination`` is always complete and verified. Network errors are retried with a growing pause;
    a hash mismatch deletes the partial file and starts over once more.
    """
    import requests  # only needed when downloading

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    last_error: Optional[Exception] = None
    for attempt in range(1, retries + 1):
        try:
            _download_once(requests, weights.url, partial, timeout, on_progress)
            digest = file_xxh128(partial)
            if digest != weights.xxh128:
                partial.unlink(missing_ok=True)
                raise CheckpointError(f"downloaded file has xxh128 {digest}, expected {weights.xxh128}")
            os.replace(partial, destination)
            return destination
        except (requests.RequestException, OSError, CheckpointError) as error:
            last_error = error
            logger.warning("Download of %s failed (attempt %d/%d): %s", weights.url, attempt, retries, error)
            if attempt < retries:
                time.sleep(backoff_s * attempt)
    raise CheckpointError(f"gave up after {retries} attempts: {last_error}")


def _download_once(requests, url: str, partial: Path, timeout: float, on_progress: Optional[DownloadProgress]) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:  # the partial file is already complete
            return
        response.raise_for_status()
        resumed = response.status_code == 206
        if not resumed:
            have = 0
        total = int(response.headers.get("Content-Length", 0)) + have or None
        with open(partial, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=partial.name.removesuffix(".part")
        ) as bar:
            for chunk in response.iter_content(_STREAM_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
                if on_progress is not None:
                    on_progress(bar.n, total)
