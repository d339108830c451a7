"""Bounds on what any JSON a request carries may hold: its size, its strings, its depth."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidRequestError
from ..request_values import MAX_TEXT_LENGTH

MAX_JSON_BODY_BYTES = 64 * 1024  # what Slicer and OHIF send is a few hundred bytes
MAX_JSON_DEPTH = 3  # {"key": [..]} is 2; an option object holding a list is 3


def require_small_json(value: Any, what: str) -> None:
    """A JSON value of at most :data:`MAX_JSON_BODY_BYTES` (413 beyond)."""
    try:
        size = len(json.dumps(value, separators=(",", ":")))
    except (RecursionError, ValueError):
        raise InvalidRequestError(f"{what} is nested too deeply to be read.", status=400) from None
    if size > MAX_JSON_BODY_BYTES:
        raise InvalidRequestError(
            f"{what} is {size} bytes of JSON; at most {MAX_JSON_BODY_BYTES} are accepted. Send only the options "
            f"the request takes (strings of at most {MAX_TEXT_LENGTH} characters).",
            status=413,
        )


def check_body(values: Any, declared: Any, what: str) -> None:
    """A JSON body bounded in size (:func:`require_small_json`), and its keys other than ``declared`` (which their
    own fields read, with messages that say more) bounded in length and depth (:func:`check_json_values`)."""
    require_small_json(values, what)
    if isinstance(values, dict):
        check_json_values({key: value for key, value in values.items() if key not in declared}, "body")


def check_json_values(value: Any, key: str, depth: int = 0) -> None:
    """Every string in a JSON value at most :data:`MAX_TEXT_LENGTH` characters (keys too), nesting at most
    :data:`MAX_JSON_DEPTH` levels below the body."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequestError(f"'{key}' is nested more than {MAX_JSON_DEPTH} levels deep: send plain values.")
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise InvalidRequestError(
                f"'{key}' is {len(value)} characters long; at most {MAX_TEXT_LENGTH} are allowed."
            )
    elif isinstance(value, dict):
        for name, item in value.items():
            check_json_values(name, f"{key} key", depth)
            check_json_values(item, f"{key}.{name}" if depth else str(name), depth + 1)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            check_json_values(item, f"{key}[{position}]", depth + 1)
