"""One lock per key (a series, an image), kept only while somebody holds or waits for it.

A dict of locks that only grows is a slow leak on a server that sees every series of a PACS; here a key's
lock disappears as soon as its last user leaves, so the table is as large as the work in progress.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Dict, Hashable, Iterator, List


class KeyedLocks:
    """``with locks.hold(key):`` serialises work on one key; different keys run in parallel."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: Dict[Hashable, List] = {}  # key → [lock, number of holders and waiters]

    @contextlib.contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
