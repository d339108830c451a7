"""A client that hangs up cancels its inference: an ASGI middleware watches the connection of each ``/infer``
request once its body is read, and sets the request's :class:`~medicosam_app.runtime.cancellation.Cancellation`
when the client disconnects. The core checks it between slices (``raise_if_cancelled``).

The cancellation travels with the request: set as the current one here (the endpoint's worker thread inherits
it), put into the request dict by the app's ``infer`` (MONAI Label runs the task in another thread pool, which
does not), and made current again by the task (:func:`cancellable_request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Callable, Dict, Iterator, MutableMapping

from medicosam_app.runtime.cancellation import Cancellation, cancellable, current_cancellation
from medicosam_app.security.permissions import rule_for

logger = logging.getLogger(__name__)

REQUEST_KEY = "_medicosam_cancellation"  # in MONAI Label's request dict, from the app's infer to the task
WATCHED = {("POST", "/infer/{model}")}


class CancelOnDisconnect:
    def __init__(self, app: Callable[..., Any], api_prefix: str = "") -> None:
        self.app = app
        self.api_prefix = api_prefix

    def watched(self, scope: Dict[str, Any]) -> bool:
        rule = rule_for(scope["method"], scope["path"], self.api_prefix)
        return rule is not None and (rule.method, rule.route) in WATCHED

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.watched(scope):
            await self.app(scope, receive, send)
            return
        cancellation = Cancellation()
        state: Dict[str, Any] = {"watcher": None, "last": None, "answered": False}

        async def watch() -> None:
            message = await receive()  # after the body, the next message is the disconnect
            state["last"] = message
            if message["type"] == "http.disconnect" and not state["answered"]:
                cancellation.cancel()
                logger.info("%s %s: the client went away; its work stops at the next slice",
                            scope["method"], scope["path"])

        async def watched_receive() -> Dict[str, Any]:
            if state["watcher"] is not None:  # the app asks again after the body: hand it what the watcher saw
                await state["watcher"]
                return state["last"] or {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                cancellation.cancel()
            elif message["type"] == "http.request" and not message.get("more_body", False):
                state["watcher"] = asyncio.ensure_future(watch())
            return message

        async def watched_send(message: Dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                state["answered"] = True  # a client closing after its answer went away from nothing

        with cancellable(cancellation):
            try:
                await self.app(scope, watched_receive, watched_send)
            finally:
                watcher = state["watcher"]
                if watcher is not None and not watcher.done():
                    watcher.cancel()


def carry_cancellation(request: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The request dict with the current cancellation in it (the app's ``infer``, in the endpoint's thread)."""
    request[REQUEST_KEY] = current_cancellation()
    return request


@contextlib.contextmanager
def cancellable_request(request: MutableMapping[str, Any]) -> Iterator[None]:
    """In the task's thread: the request's cancellation made current (and taken out of the dict, which is
    audited and logged)."""
    with cancellable(request.pop(REQUEST_KEY, None)):
        yield
