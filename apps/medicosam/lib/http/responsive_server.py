"""Keep the server answering while a model works.

MONAI Label 0.8.5 declares its heavy endpoints ``async def`` but does the work synchronously inside them,
so an inference blocks the event loop and with it every other request (``/info``, other users' clicks).
FastAPI runs plain ``def`` endpoints in its thread pool. Here each such route is replaced, at start-up
and in place, by a plain function with the same signature that drives the original coroutine to the end
on the worker thread. Nothing in the installed package is edited, and the protocol is unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Tuple

from fastapi import FastAPI
from fastapi.routing import APIRoute

from medicosam_app.security.permissions import Rule, routes_with

logger = logging.getLogger(__name__)

def in_worker_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain function with ``endpoint``'s signature that runs the coroutine on the calling (worker) thread."""

    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(endpoint(*args, **kwargs))

    # eval_str: annotations written as text (postponed) are resolved where the endpoint was written, not here.
    run.__signature__ = inspect.signature(endpoint, eval_str=True)  # type: ignore[attr-defined]
    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    # No __wrapped__: FastAPI unwraps it to decide between event loop and thread pool.
    return run


def serve_in_threads(app: FastAPI, rules: Optional[Sequence[Rule]] = None) -> int:
    """Replace the ``async`` routes of ``app`` that the route table marks ``heavy`` (they compute, read or write
    files while the client waits) by thread-pool ones; returns how many changed. ``rules``: the route table
    (default: ``RULES``)."""
    heavy = [(rule.method, rule.route) for rule in routes_with("heavy", rules)]
    return replace_endpoints(app, heavy, in_worker_thread)


def replace_endpoints(
    app: FastAPI, routes: Iterable[Tuple[str, str]], wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> int:
    """Rebuild each ``async`` route of ``app`` whose (method, path) is in ``routes`` around
    ``wrap(endpoint)``, in place and with everything else kept; returns how many changed."""
    wanted = set(routes)
    changed = 0
    for router in routers_of(app.router):
        replaced = False
        for position, route in enumerate(router.routes):
            if not isinstance(route, APIRoute) or not inspect.iscoroutinefunction(route.endpoint):
                continue
            if not any((method, route.path) in wanted for method in route.methods):
                continue
            router.routes[position] = APIRoute(
                route.path,
                wrap(route.endpoint),
                methods=list(route.methods),
                name=route.name,
                summary=route.summary,
                tags=route.tags,
                responses=route.responses,
                response_class=route.response_class,
                include_in_schema=route.include_in_schema,
                dependency_overrides_provider=route.dependency_overrides_provider,
            )
            replaced = True
            changed += 1
        if replaced:
            # FastAPI ≥ 0.16x resolves included routers lazily and caches them per routes version.
            getattr(router, "_mark_routes_changed", lambda: None)()
    return changed


def routers_of(router: Any) -> Iterator[Any]:
    """``router`` and every router included in it (kept as wrappers by recent FastAPI versions)."""
    yield router
    for route in router.routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from routers_of(included)


def serve_heavy_endpoints_in_threads() -> None:
    """Apply :func:`serve_in_threads` to the running MONAI Label server's FastAPI app."""
    from monailabel.app import app  # imported here: the server has already built it at this point

    changed = serve_in_threads(app)
    logger.info("Serving %d heavy MONAI Label endpoints from the thread pool", changed)
