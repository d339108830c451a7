"""A thread-safe LRU map with a byte budget, and one computation per key at a time."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Callable, ContextManager, Dict, Generic, Hashable, Optional, Tuple, TypeVar

V = TypeVar("V")

# Given the thread computing a key, what to hold while waiting for it (e.g. "don't pause that thread").
WhileWaiting = Callable[[threading.Thread], ContextManager[None]]


class _Pending:
    """A key being computed: who computes it, and the event its waiters wait on."""

    __slots__ = ("owner", "done")

    def __init__(self) -> None:
        self.owner = threading.current_thread()
        self.done = threading.Event()


class LRUCache(Generic[V]):
    """Keeps the most recently used values whose sizes add up to at most ``max_bytes``.

    ``get_or_compute`` runs ``compute`` outside the lock, and concurrent callers asking for the same
    missing key wait for the first one's result instead of computing it again. A waiter learns which
    thread it waits for (``while_waiting``), so a scheduler can make sure that thread is not paused
    on the waiter's behalf — the cycle that would otherwise hang a click on a prefetched slice.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = int(max_bytes)
        self._size_of = size_of
        self._items: "OrderedDict[Hashable, Tuple[V, int]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pending: Dict[Hashable, _Pending] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> Optional[V]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def peek(self, key: Hashable) -> Optional[V]:
        """The value without counting a use or changing its recency."""
        with self._lock:
            item = self._items.get(key)
            return None if item is None else item[0]

    def put(self, key: Hashable, value: V) -> None:
        size = int(self._size_of(value))
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return  # larger than the whole budget: serve it, keep nothing
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def get_or_compute(
        self, key: Hashable, compute: Callable[[], V], while_waiting: Optional[WhileWaiting] = None
    ) -> Tuple[V, bool]:
        """Return ``(value, was_cached)``; a value another thread is computing is waited for, not recomputed.

        ``while_waiting(owner)`` is entered (outside the lock) for as long as this call waits on ``owner``.
        If the owner fails, one of the waiters computes the value itself.
        """
        while True:
            with self._lock:
                item = self._items.get(key)
                if item is not None:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return item[0], True
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = _Pending()
                    self.misses += 1
                    break
            with while_waiting(pending.owner) if while_waiting else contextlib.nullcontext():
                pending.done.wait()
        try:
            value = compute()
            self.put(key, value)
            return value, False
        finally:
            with self._lock:
                self._pending.pop(key).done.set()

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Remove every entry whose key satisfies ``predicate``; returns how many went."""
        with self._lock:
            stale = [key for key in self._items if predicate(key)]
            for key in stale:
                self._bytes -= self._items.pop(key)[1]
            return len(stale)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
