"""Propagation's read-ahead: a slice that is not embedded yet is encoded together with the next ones its walk will
ask for, in one encoder batch, and on a GPU the batch after it is encoded while this one is decoded.

A walk asks for slices one after another in one direction (every ``frame_step``-th one); a gap is filled from both
ends in turn. The walk a slice belongs to is the one that asked for the nearest slice before it, and its step is
the distance to that slice: the batch is that slice and the next ones at the same step, within the walk's bounds.
A walk that stops leaves at most one batch (two with overlap) encoded for nothing: they stay in the cache, where
a correction or a second propagation finds them.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

EncodeSlices = Callable[[Sequence[int]], object]  # encodes the slices into the embedding cache
IsEmbedded = Callable[[int], bool]


class WalkAhead:
    """The slices a propagation will likely ask for next (pure bookkeeping; see the module's docstring)."""

    def __init__(self, bounds: Tuple[int, int], batch_size: int) -> None:
        self.low, self.high = bounds
        self.batch_size = max(1, int(batch_size))
        self._asked: List[int] = []

    def next_slices(self, index: int, count: Optional[int] = None) -> List[int]:
        """``index`` and up to ``count - 1`` (default: the batch size) slices further along the walk that reaches it."""
        count = self.batch_size if count is None else count
        step = self.step_to(index)
        slices = [index]
        while step and len(slices) < count and self.low <= slices[-1] + step <= self.high:
            slices.append(slices[-1] + step)
        return slices

    def step_to(self, index: int) -> int:
        """The signed step of the walk that reaches ``index`` (0 for the first slice asked, or one asked before)."""
        if not self._asked or index in self._asked:
            return 0
        nearest = min(self._asked, key=lambda asked: (abs(asked - index), asked))
        return index - nearest

    def asked(self, index: int) -> None:
        self._asked.append(index)


class ReadAhead:
    """Encodes ahead of a propagation's decoder: a miss encodes a batch along the walk; with ``overlap`` the next
    batch is encoded on a worker thread while the walk decodes this one (a GPU runs both at once; on a CPU they
    would only share its cores)."""

    def __init__(
        self, bounds: Tuple[int, int], batch_size: int, encode: EncodeSlices, is_embedded: IsEmbedded,
        overlap: bool = False,
    ) -> None:
        self.walk = WalkAhead(bounds, batch_size)
        self._encode = encode
        self._is_embedded = is_embedded
        self._worker: Optional[ThreadPoolExecutor] = ThreadPoolExecutor(1, "propagation-read-ahead") if overlap else None
        self._pending: Dict[int, Future] = {}
        self._lock = threading.Lock()
        self.batches: List[List[int]] = []  # what was encoded, in order (for logs and tests)

    def before_decoding(self, index: int) -> None:
        """Make sure ``index`` is embedded (waiting for the worker if it is encoding it), reading ahead on a miss."""
        with self._lock:
            pending = self._pending.pop(index, None)
        if pending is not None:
            first, last, step = pending.result()  # re-raises the worker's error here, in the request's thread
            if first == index:  # the walk reached the worker's batch: the worker goes on with the next one
                self._read_ahead_after(last, step)
        if not self._is_embedded(index):
            step = self.walk.step_to(index)
            reach = self.walk.next_slices(index)
            self._run([i for i in reach if i == index or not self._claimed(i)])
            self._read_ahead_after(reach[-1], step)
        self.walk.asked(index)

    def _claimed(self, index: int) -> bool:
        with self._lock:
            return index in self._pending or self._is_embedded(index)

    def _run(self, batch: List[int]) -> None:
        self.batches.append(batch)
        self._encode(batch)

    def _read_ahead_after(self, last: int, step: int) -> None:
        """On the worker (overlap only): the next batch of the walk going ``step`` at a time beyond ``last``."""
        if self._worker is None or self.walk.batch_size == 1 or not step:
            return
        batch: List[int] = []
        index = last
        while len(batch) < self.walk.batch_size and self.walk.low <= index + step <= self.walk.high:
            index += step
            if not self._claimed(index):
                batch.append(index)
        if not batch:
            return

        def encode() -> Tuple[int, int, int]:
            self._run(batch)
            return batch[0], index, step

        future = self._worker.submit(encode)
        with self._lock:
            for slice_index in batch:
                self._pending[slice_index] = future

    def close(self) -> None:
        """Let a batch in flight finish into the cache without waiting for it."""
        if self._worker is not None:
            self._worker.shutdown(wait=False)
