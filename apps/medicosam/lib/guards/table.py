"""The request checks by name (the route table's ``guard`` column), and the wrapper that puts each in front of its
endpoint at start-up."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, Optional, Sequence

from fastapi import FastAPI

from medicosam_app.security.permissions import Rule, routes_with

from ..http.http_errors import as_client_errors
from ..http.responsive_server import replace_endpoints

from .endpoints import (
    check_all_scoring,
    check_all_training,
    check_batch_infer,
    check_image_info_read,
    check_image_upload,
    check_infer,
    check_label_delete,
    check_label_read,
    check_label_save,
    check_scoring,
    check_session_id,
    check_session_read,
    check_session_upload,
    check_strategy,
    check_training,
    json_field_check,
)
from .sessions import after_session_upload
from .values import Check

logger = logging.getLogger(__name__)

# The checks the route table's ``guard`` column names (medicosam_app.security.permissions.RULES).
CHECKS: Dict[str, Check] = {
    "infer": check_infer,
    "label_save": check_label_save,
    "label_read": check_label_read,
    "image_info_read": check_image_info_read,
    "label_delete": check_label_delete,
    "image_upload": check_image_upload,
    "info_json": json_field_check("info"),
    "params_json": json_field_check("params"),
    "strategy": check_strategy,
    "batch_infer": check_batch_infer,
    "scoring": check_scoring,
    "all_scoring": check_all_scoring,
    "training": check_training,
    "all_training": check_all_training,
    "session_upload": check_session_upload,
    "session_read": check_session_read,
    "session_id": check_session_id,
}

# What runs after an endpoint answered, with its result, by the check's name.
AFTER: Dict[str, Callable[[Any, Any], None]] = {"session_upload": after_session_upload}


def guarded(
    endpoint: Callable[..., Any], check: Check, app_instance: Callable[[], Any],
    after: Optional[Callable[[Any, Any], None]] = None,
) -> Callable[..., Any]:
    """An ``async`` endpoint with ``endpoint``'s signature that runs ``check`` first and turns the
    client's mistakes, ours or MONAI Label's, into 4xx answers."""

    async def run(**arguments: Any) -> Any:
        with as_client_errors():
            check(app_instance(), arguments)
            result = await endpoint(**arguments)
            if after is not None:
                after(app_instance(), result)
            return result

    # eval_str: annotations written as text (postponed) are resolved where the endpoint was written, not here.
    run.__signature__ = inspect.signature(endpoint, eval_str=True)  # type: ignore[attr-defined]
    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    return run


def guard_requests(app: FastAPI, app_instance: Callable[[], Any], rules: Optional[Sequence[Rule]] = None) -> int:
    """Put the check each route's row names (``guard``) in front of the running server's endpoint; returns how
    many were replaced. ``rules``: the route table (default: ``RULES``). A row naming an unknown check stops the
    start: a route the table says is checked must never run unchecked."""
    changed = 0
    for rule in routes_with("guard", rules):
        if rule.guard not in CHECKS:
            raise KeyError(f"The route table names the check {rule.guard!r} for {rule.method} {rule.route}; "
                           f"the checks are {sorted(CHECKS)}")
        check, after = CHECKS[rule.guard], AFTER.get(rule.guard)
        changed += replace_endpoints(
            app, [(rule.method, rule.route)],
            lambda endpoint, check=check, after=after: guarded(endpoint, check, app_instance, after),
        )
    logger.info("Checking the requests of %d MONAI Label endpoints before they run", changed)
    return changed
