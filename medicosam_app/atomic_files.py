"""Files written so that a reader (or a crash) never sees half of one.

Each writer puts the new contents in a temporary file in the destination's folder (so the rename cannot
cross file systems), flushes and fsyncs it, renames it over the destination with :func:`os.replace` (one
step for every reader), then fsyncs the folder so that the rename itself survives a power cut. A process
killed at any moment leaves either the old file or the new one, plus at most a hidden temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, IO, Iterator, Union

from .errors import StorageFullError, causes, is_storage_full

PathLike = Union[str, "os.PathLike[str]"]


def fsync_directory(folder: PathLike) -> None:
    """Make the folder's entries (a rename, a new file or subfolder) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders_durably(folder: PathLike) -> None:
    """``os.makedirs``, and each new folder's parent fsynced, so a label saved into it is reachable after a
    power cut."""
    folder = Path(folder)
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_directory(new.parent)


def _write_atomic(path: PathLike, fill: Callable[[IO[bytes]], None], temporary_prefix: str) -> None:
    path = Path(path)
    make_folders_durably(path.parent)
    fd, temporary = tempfile.mkstemp(prefix=temporary_prefix, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


@contextlib.contextmanager
def storage_full_as(what: str, path: PathLike, then: str = "send it again") -> Iterator[None]:
    """A write in the block that finds no room raises :class:`StorageFullError` saying ``what`` (for example
    "Label 'final' of image 'ct_1' was not saved"), which folder's disk is full, and what to do once there is
    room (``then``); other errors pass."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - a writer may wrap the OSError (torch.save raises RuntimeError)
        if isinstance(error, StorageFullError) or not is_storage_full(error):
            raise
        reason = next((e.strerror for e in causes(error) if isinstance(e, OSError) and e.strerror), str(error))
        raise StorageFullError(
            f"{what}: the disk holding {Path(path).parent} is full ({reason}). What was saved "
            f"before is unchanged. Ask the server's administrator to free space, then {then}."
        ) from error


@contextlib.contextmanager
def restored_if_failed(path: PathLike, temporary_prefix: str = "") -> Iterator[None]:
    """The file at ``path`` as it is on entry comes back if the block raises: a block that replaces the file
    and then fails to record it elsewhere (an index write on a full disk) leaves things as they were. If there
    was no file, one the block made is removed. The old file is kept by a hard link (no copy, no room needed),
    named ``<temporary_prefix or .name.>XXXX.previous`` beside it and removed when the block succeeds."""
    path = Path(path)
    kept = None
    if os.path.lexists(path):
        kept = path.with_name(f"{temporary_prefix or f'.{path.name}.'}{uuid.uuid4().hex[:8]}.previous")
        os.link(path, kept)
    try:
        yield
    except BaseException:
        if kept is not None and os.path.lexists(path) and os.path.samefile(kept, path):
            kept.unlink()  # the block failed before replacing it (and rename() of two links to one file is a no-op)
        elif kept is not None:
            os.replace(kept, path)
        else:
            path.unlink(missing_ok=True)
        raise
    if kept is not None:
        kept.unlink(missing_ok=True)


def write_bytes_atomic(path: PathLike, data: bytes, temporary_prefix: str = "") -> None:
    """Replace ``path`` with ``data`` in one step. The temporary file is named
    ``<temporary_prefix or .name.>XXXX.part`` beside it."""
    _write_atomic(path, lambda f: f.write(data), temporary_prefix or f".{Path(path).name}.")


def copy_file_atomic(source: PathLike, path: PathLike, temporary_prefix: str = "") -> None:
    """Replace ``path`` with a copy of ``source`` in one step."""
    def fill(f: IO[bytes]) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, f, 1 << 20)

    _write_atomic(path, fill, temporary_prefix or f".{Path(path).name}.")


def write_json_atomic(path: PathLike, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path``, replacing any old file in one step."""
    write_bytes_atomic(path, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))
