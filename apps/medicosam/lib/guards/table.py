"""Which check guards which MONAI Label endpoint, and the wrapper that puts it in front at start-up."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, Optional, Tuple

from fastapi import FastAPI


from ..http_errors import as_client_errors
from ..responsive_server import replace_endpoints

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

GUARDS: Dict[Tuple[str, str], Check] = {
    ("POST", "/infer/{model}"): check_infer,
    ("PUT", "/datastore/label"): check_label_save,
    ("GET", "/datastore/label"): check_label_read,
    ("GET", "/datastore/label/info"): check_label_read,
    ("GET", "/datastore/image/info"): check_image_info_read,
    ("DELETE", "/datastore/label"): check_label_delete,
    ("PUT", "/datastore/image"): check_image_upload,
    ("PUT", "/datastore/"): check_image_upload,
    ("PUT", "/datastore/image/info"): json_field_check("info"),
    ("PUT", "/datastore/label/info"): json_field_check("info"),
    ("PUT", "/datastore/updatelabelinfo"): json_field_check("params"),
    ("POST", "/activelearning/{strategy}"): check_strategy,
    ("POST", "/batch/infer/{model}"): check_batch_infer,
    ("POST", "/scoring/{method}"): check_scoring,
    ("POST", "/scoring/"): check_all_scoring,
    ("POST", "/train/{model}"): check_training,
    ("POST", "/train/"): check_all_training,
    ("PUT", "/session/"): check_session_upload,
    ("GET", "/session/{session_id}"): check_session_read,
    ("DELETE", "/session/{session_id}"): check_session_id,
}


# What runs after an endpoint answered, with its result.
AFTER: Dict[Tuple[str, str], Callable[[Any, Any], None]] = {("PUT", "/session/"): after_session_upload}


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

    run.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]
    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    return run


def guard_requests(app: FastAPI, app_instance: Callable[[], Any]) -> int:
    """Put the checks of :data:`GUARDS` in front of the running server's endpoints; returns how many."""
    changed = 0
    for route, check in GUARDS.items():
        after = AFTER.get(route)
        changed += replace_endpoints(
            app, [route], lambda endpoint, check=check, after=after: guarded(endpoint, check, app_instance, after)
        )
    logger.info("Checking the requests of %d MONAI Label endpoints before they run", changed)
    return changed
