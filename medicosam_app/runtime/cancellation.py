"""Work nobody waits for any more stops: a cancellation flag the server raises when a client hangs up, checked by
the long loops of the core (each propagated slice, each slice of an automatic task).

The server's wiring makes a :class:`Cancellation` per request and enters :func:`cancellable` around the work, in
the thread that does it; the core only calls :func:`raise_if_cancelled` at its checkpoints. Without a current
cancellation (tests, the command line) the checkpoints do nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from contextvars import ContextVar
from typing import Iterator, Optional

from ..errors import InvalidRequestError

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose client went away; nobody reads the answer


class RequestCancelled(InvalidRequestError):
    """The client went away; the work was stopped at the next checkpoint."""

    def __init__(self) -> None:
        super().__init__("The client closed the connection: the work was stopped.", status=CLIENT_CLOSED_REQUEST)


class Cancellation:
    """A flag one request's work checks; set from any thread (the event loop that saw the disconnect)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reported = False

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __deepcopy__(self, memo: dict) -> "Cancellation":
        return self  # the same flag in every copy of a request (MONAI Label deep-copies the request dict)

    def __copy__(self) -> "Cancellation":
        return self


_current: ContextVar[Optional[Cancellation]] = ContextVar("medicosam_cancellation", default=None)


def current_cancellation() -> Optional[Cancellation]:
    return _current.get()


@contextlib.contextmanager
def cancellable(cancellation: Optional[Cancellation]) -> Iterator[None]:
    """Make ``cancellation`` the current one for the work in this block (None: not cancellable)."""
    token = _current.set(cancellation)
    try:
        yield
    finally:
        _current.reset(token)


def raise_if_cancelled() -> None:
    """A checkpoint: :class:`RequestCancelled` if the current request's client went away."""
    cancellation = _current.get()
    if cancellation is not None and cancellation.cancelled:
        if not cancellation.reported:
            cancellation.reported = True
            logger.info("Work stopped: its client closed the connection")
        raise RequestCancelled()
