"""Loaded volumes, kept in memory so a click never re-reads the image file."""

from __future__ import annotations

import os
from pathlib import Path

from ..lru import LRUCache
from .volume import Volume, read_volume


class VolumeCache:
    """Reads each image file once; a file that changes on disk (size or mtime) is read again."""

    def __init__(self, max_bytes: int = 4 << 30) -> None:
        self._cache: LRUCache[Volume] = LRUCache(max_bytes, size_of=lambda v: v.array.nbytes)

    def get(self, path: os.PathLike) -> Volume:
        path = Path(path)
        stat = path.stat() if path.exists() else None
        key = (str(path.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None)
        volume, _ = self._cache.get_or_compute(key, lambda: read_volume(path))
        return volume
