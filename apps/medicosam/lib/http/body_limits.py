"""Request bodies bounded before they are read: a ``Content-Length`` over the route's limit is answered 413 at once;
a body sent without one (chunked) is counted as it arrives and cut off at the limit with the same 413.

The route table's ``uploads`` column (:mod:`medicosam_app.security.permissions`): routes that take image or label
files may send up to the server's ``session_max_mb``; every other route — JSON options, forms, prompts — at most
:data:`SMALL_BODY_BYTES`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Optional, Sequence

from medicosam_app.security.permissions import Rule, rule_for

SMALL_BODY_BYTES = 1 << 20  # the largest prompt request (1000 points) is ~40 kB; a label_info list a few kB


class BodyTooLarge(Exception):
    pass


class BodyLimits:
    """The ASGI middleware; ``upload_bytes()`` is the current limit for the routes that take files. ``rules``: the
    route table (default: ``RULES``)."""

    def __init__(
        self, app: Callable[..., Any], upload_bytes: Callable[[], int], api_prefix: str = "",
        rules: Optional[Sequence[Rule]] = None,
    ) -> None:
        self.app = app
        self.upload_bytes = upload_bytes
        self.api_prefix = api_prefix
        self.rules = rules

    def limit(self, method: str, path: str) -> int:
        rule = rule_for(method, path, self.api_prefix, self.rules)
        if rule is not None and rule.uploads:
            return self.upload_bytes() + SMALL_BODY_BYTES  # the files, plus the form's fields and boundaries
        return SMALL_BODY_BYTES

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["method"], scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit, int(declared))
            return
        if declared is None and limit == SMALL_BODY_BYTES:
            # Small routes without a length (chunked): read the body here, at most the limit, and hand it on whole,
            # so an oversized one is a clean 413 rather than an error inside the endpoint's body parsing.
            messages, size = [], 0
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > limit:
                    await _refuse(send, limit, None)
                    return
                if not message.get("more_body", False):
                    break
            replay = iter(messages)

            async def replayed() -> Dict[str, Any]:
                return next(replay, None) or await receive()

            await self.app(scope, replayed, send)
            return
        received = {"bytes": 0, "started": False, "exceeded": False}

        async def counted() -> Dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > limit:
                    received["exceeded"] = True
                    raise BodyTooLarge()
            return message

        async def watch(message: Dict[str, Any]) -> None:
            if received["exceeded"]:
                # The endpoint turned the cut-off into its own error (FastAPI: 400 "error parsing the body"):
                # answer what happened instead, once, and drop the endpoint's answer.
                if message["type"] == "http.response.start" and not received["started"]:
                    received["started"] = True
                    await _refuse(send, limit, None)
                return
            if message["type"] == "http.response.start":
                received["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except BodyTooLarge:
            if not received["started"]:
                await _refuse(send, limit, None)


async def _refuse(send: Callable, limit: int, declared: Any) -> None:
    size = f"{declared} bytes" if declared is not None else "more"
    detail = (f"The request body is {size}; this route accepts at most {limit} bytes. Send options as small JSON, "
              "and images or labels to the upload routes (their limit is session_max_mb).")
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
