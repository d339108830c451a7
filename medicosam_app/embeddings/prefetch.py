"""Encodes slices before anyone clicks them: the neighbours of the slice a client works on, outward.

One background thread does the work, at the lowest CPU priority the OS gives a thread, so an encoding
requested by a click (done in the request's own thread) takes the CPU first. Each client has one plan;
a new plan for the same client replaces the old one, so moving to another image or slice drops the
stale work (an encoding already running completes and stays in the cache for everyone).

Clicks *hold* the worker: no batch starts, and a running encode pauses between transformer blocks. A click
that needs the very slice the worker is encoding must not hold it paused — it would wait for itself — so
such a click marks the worker *awaited* (:meth:`Prefetcher.awaited`) and the paused encode runs on to the
end. A click therefore waits for at most the rest of one encode, never for a cycle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Deque, Dict, Iterator, List, Optional, Sequence

logger = logging.getLogger(__name__)


def outward_order(center: int, count: int, radius: int) -> List[int]:
    """``center±1, center±2, …`` within ``[0, count)`` and at most ``radius`` away (the centre excluded)."""
    order: List[int] = []
    for step in range(1, radius + 1):
        for index in (center + step, center - step):
            if 0 <= index < count:
                order.append(index)
    return order


@dataclass
class PrefetchPlan:
    """What to encode for one client: slice indices in order, and how to encode and check them."""

    target: str  # image and axis the plan is for, e.g. "<content hash>:axis2"
    slices: Sequence[int]
    encode: Callable[[Sequence[int]], None]
    is_ready: Callable[[int], bool]
    batch_size: int = 1  # slices per encoder pass, unless the prefetcher is configured with one
    pending: Deque[int] = field(init=False)

    def __post_init__(self) -> None:
        self.pending = deque(self.slices)

    def take(self, batch_size: int) -> List[int]:
        """The next slices not yet encoded, at most ``batch_size``."""
        batch: List[int] = []
        while self.pending and len(batch) < batch_size:
            index = self.pending.popleft()
            if not self.is_ready(index):
                batch.append(index)
        return batch


class Prefetcher:
    """A bounded, per-client queue of background encodings served by one low-priority thread."""

    def __init__(self, batch_size: Optional[int] = None, lower_priority: bool = True, quiet_seconds: float = 1.0) -> None:
        # None: each plan's own batch size (its encoder's, see model/batch_choice.py).
        self.batch_size = None if batch_size is None else max(1, int(batch_size))
        self.lower_priority = lower_priority
        # After a click, background work waits this long: an annotator refining a mask clicks in bursts,
        # and even an idle-priority encoder slows a concurrent decoder through shared caches.
        self.quiet_seconds = float(quiet_seconds)
        self._last_release = float("-inf")
        self._plans: Dict[str, PrefetchPlan] = {}
        self._served: Dict[str, int] = {}  # client → turn number of its last batch
        self._turn = 0
        self._condition = threading.Condition()
        self._holds = 0
        self._awaited = 0  # foreground threads waiting for the encode the worker is running
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="medicosam-prefetch", daemon=True)
        self._thread.start()
        self.encoded = 0

    def focus(self, client_id: str, plan: PrefetchPlan) -> None:
        """Make ``plan`` the client's work, replacing what it had queued."""
        with self._condition:
            self._plans[client_id] = plan
            self._condition.notify_all()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """While held (a click is encoding its own slice), no new background batch starts."""
        with self._condition:
            self._holds += 1
        try:
            yield
        finally:
            with self._condition:
                self._holds -= 1
                self._last_release = time.monotonic()
                self._condition.notify_all()

    @contextlib.contextmanager
    def awaited(self) -> Iterator[None]:
        """While a foreground thread waits for the encode the worker is running, that encode never pauses."""
        with self._condition:
            self._awaited += 1
            self._condition.notify_all()
        try:
            yield
        finally:
            with self._condition:
                self._awaited -= 1

    def while_waiting_for(self, owner: threading.Thread) -> ContextManager[None]:
        """What a thread waiting on ``owner``'s computation holds: :meth:`awaited` if ``owner`` is the worker."""
        return self.awaited() if owner is self._thread else contextlib.nullcontext()

    def in_worker(self) -> bool:
        """Whether the calling thread is the prefetch worker."""
        return threading.current_thread() is self._thread

    def pause_while_held(self) -> None:
        """Called by the worker between encoder blocks: waits while a click holds the processor, and for
        ``quiet_seconds`` after the last one — unless a click is waiting for this very encode."""
        with self._condition:
            self._wait_until_quiet(unless_awaited=True)

    def _wait_until_quiet(self, unless_awaited: bool = False) -> None:
        """With the lock held: return once no click holds and none ended in the last ``quiet_seconds``
        (at once, with ``unless_awaited``, while a click waits for the running encode)."""
        while not self._stopped:
            if unless_awaited and self._awaited:
                return
            if self._holds:
                self._condition.wait()
                continue
            remaining = self._last_release + self.quiet_seconds - time.monotonic()
            if remaining <= 0:
                return
            self._condition.wait(remaining)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every plan is done and nothing runs; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._busy and not self._has_work(), timeout)

    @property
    def stats(self) -> Dict[str, object]:
        with self._condition:
            return {
                "queued": sum(len(plan.pending) for plan in self._plans.values()),
                "clients": len(self._plans),
                "running": self._busy,
                "awaited_by": self._awaited,
                "encoded": self.encoded,
            }

    def stop(self, timeout: float = 60) -> None:
        """Drop all plans and end the worker after its current block; wait for it up to ``timeout`` s."""
        with self._condition:
            self._stopped = True
            self._plans.clear()
            self._condition.notify_all()
        self._thread.join(timeout=timeout)

    def _has_work(self) -> bool:
        return any(plan.pending for plan in self._plans.values())

    def _next(self) -> tuple[PrefetchPlan, List[int]] | None:
        """Round robin: the client served longest ago (or never) goes first."""
        for client_id in sorted(self._plans, key=lambda c: self._served.get(c, -1)):
            plan = self._plans[client_id]
            batch = plan.take(self.batch_size or plan.batch_size)
            if batch:
                self._turn += 1
                self._served[client_id] = self._turn
                return plan, batch
            del self._plans[client_id]
            self._served.pop(client_id, None)
        return None

    def _run(self) -> None:
        if self.lower_priority:
            _lower_thread_priority()
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stopped or self._has_work())
                self._wait_until_quiet()
                if self._stopped:
                    return
                work = self._next()
                self._busy = work is not None
                if work is None:  # the plans ran out without work (their slices were ready): tell wait_idle
                    self._condition.notify_all()
                    continue
            plan, batch = work
            try:
                plan.encode(batch)
                self.encoded += len(batch)
            except Exception:  # a failed prefetch must never stop the worker; the click will report it
                logger.exception("Prefetch of slices %s of %s failed", batch, plan.target)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()


def _lower_thread_priority() -> None:
    """Run this thread (and the math threads it starts) only when the CPU is otherwise idle (Linux
    SCHED_IDLE), else at nice 19, so clicks get the processor first."""
    thread_id = threading.get_native_id()
    try:
        os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError) as error:
        logger.debug("SCHED_IDLE unavailable: %s", error)
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, 19)
    except (AttributeError, OSError) as error:  # not Linux, or not permitted: prefetch still works
        logger.info("Prefetch runs at normal priority: %s", error)
