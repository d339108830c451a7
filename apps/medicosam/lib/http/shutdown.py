"""Stop within seconds on SIGTERM (and Ctrl-C), whatever requests are running.

uvicorn's graceful shutdown waits for every open connection to finish, with no time limit under
``monailabel start_server``: one long or stuck click keeps the process alive until a SIGKILL. MONAI Label's
training and scoring run as child processes that outlive the server. Service managers restart by SIGTERM
and expect the process to go.

On the first SIGTERM/SIGINT this starts a watchdog beside uvicorn's own handling: it runs the app's stop
callbacks (background encoding, schedules), terminates child processes (SIGTERM, then SIGKILL), lets
uvicorn finish what it can for ``grace_seconds``, then tells uvicorn to stop waiting, and as a last resort
ends the process. Nothing is lost by that: label saves, the datastore index, embeddings on disk and model
versions are all written to a temporary name and renamed, and a killed training round leaves the serving
version as it was (the next start recovers).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable, List, Optional, Sequence

import psutil

logger = logging.getLogger(__name__)

GRACE_SECONDS = 5.0
"""How long running requests may go on after SIGTERM before the server stops waiting for them."""

FORCED_EXIT_SECONDS = 3.0
"""After the grace period, how long uvicorn gets to return before the process ends itself."""


class PromptShutdown:
    """Wraps the running server's SIGTERM/SIGINT handlers; see the module docstring."""

    def __init__(
        self,
        on_stop: Sequence[Callable[[], None]] = (),
        grace_seconds: float = GRACE_SECONDS,
        forced_exit_seconds: float = FORCED_EXIT_SECONDS,
    ) -> None:
        self.on_stop: List[Callable[[], None]] = list(on_stop)
        self.grace_seconds = grace_seconds
        self.forced_exit_seconds = forced_exit_seconds
        self._started = threading.Event()
        self._servers: List[Any] = []  # uvicorn.Server objects whose handlers were wrapped

    def install(self) -> bool:
        """Wrap the current handlers (uvicorn's, when called from the server's start-up on its main thread)."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Prompt shutdown not installed: signal handlers can only be set on the main thread")
            return False
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            server = getattr(previous, "__self__", None)
            if server is not None and hasattr(server, "force_exit"):
                self._servers.append(server)
            signal.signal(signum, self._handler(previous))
        return True

    def _handler(self, previous: Any) -> Callable[[int, Any], None]:
        def handle(signum: int, frame: Any) -> None:
            self.begin(signal.Signals(signum).name)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # no server handler to run: the signal's own default, now
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        return handle

    def begin(self, reason: str) -> None:
        """Start stopping (once): the watchdog runs on a daemon thread."""
        if self._started.is_set():
            return
        self._started.set()
        threading.Thread(target=self._watchdog, args=(reason,), name="medicosam-shutdown", daemon=True).start()

    def _watchdog(self, reason: str) -> None:
        started = time.monotonic()
        logger.info("%s received: stopping (running requests get %.0f s)", reason, self.grace_seconds)
        for callback in self.on_stop:
            try:
                callback()
            except Exception:  # stopping must go on whatever one part does
                logger.exception("A stop callback failed")
        stopped = terminate_child_processes(timeout=min(2.0, self.grace_seconds))
        if stopped:
            logger.info("Stopped %d background process(es) (training, scoring)", stopped)
        time.sleep(max(0.0, self.grace_seconds - (time.monotonic() - started)))
        logger.warning("Requests still running after %.0f s: closing them", self.grace_seconds)
        for server in self._servers:
            server.force_exit = True
        time.sleep(self.forced_exit_seconds)
        logger.error("The server did not stop by itself: ending the process")
        logging.shutdown()
        os._exit(0)


def serving_host() -> Optional[str]:
    """The address the running uvicorn server listens on, read from its signal handler (MONAI Label starts
    uvicorn in this process); None when it cannot be told (not under uvicorn, or not on the main thread)."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    config = getattr(server, "config", None)
    return getattr(config, "host", None)


def terminate_child_processes(timeout: float = 2.0) -> int:
    """SIGTERM every child process (recursively), SIGKILL those still alive after ``timeout``; returns how many."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return len(children)
