"""Files written so that a reader (or a crash) never sees half of one.

Each writer puts the new contents in a temporary file in the destination's folder (so the rename cannot
cross file systems), flushes and fsyncs it, renames it over the destination with :func:`os.replace` (one
step for every reader), then fsyncs the folder so that the rename itself survives a power cut. A process
killed at any moment leaves either the old file or the new one, plus at most a hidden temporary file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Union

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
