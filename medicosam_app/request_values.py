"""Values read from a client's request, one parser per kind.

Slicer and OHIF send JSON, so most values arrive with their proper type; scripts, ``curl`` and form fields
send strings. Each parser accepts both spellings of a valid value and refuses anything else with an
:class:`InvalidRequestError` (HTTP 422 unless said otherwise) whose message names the key, what it got and
what is allowed. Nothing here guesses: ``"false"`` is false, and ``{}`` is not a boolean at all.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Optional, Sequence, TypeVar

from .errors import InvalidRequestError

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
MAX_TEXT_LENGTH = 1024  # longer ids or names are refused: nothing a client sends legitimately is that long

Choice = TypeVar("Choice")


def shortened_repr(value: Any, limit: int = 80) -> str:
    """``value`` as the message shows it: repr, shortened so a huge value does not flood the answer."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_bool(value: Any, key: str, default: bool = False) -> bool:
    """``true``/``false``, ``"true"``/``"false"``, ``"yes"``/``"no"``, ``"on"``/``"off"``, ``1``/``0``
    (any letter case); ``None`` (key absent) is ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise InvalidRequestError(
        f"'{key}' must be true or false (also accepted: \"true\"/\"false\", \"yes\"/\"no\", \"on\"/\"off\", "
        f"1/0), got {shortened_repr(value)}."
    )


def _range_text(minimum: Optional[float], maximum: Optional[float]) -> str:
    def shown(bound: float) -> str:
        return str(bound) if isinstance(bound, int) else f"{bound:g}"  # 0.0 reads as 0

    if minimum is not None and maximum is not None:
        return f" between {shown(minimum)} and {shown(maximum)}"
    if minimum is not None:
        return f" of at least {shown(minimum)}"
    if maximum is not None:
        return f" of at most {shown(maximum)}"
    return ""


def parse_int(
    value: Any,
    key: str,
    minimum: Optional[int] = None,
    maximum: Optional[int] = None,
    default: Optional[int] = None,
) -> int:
    """An integer (``2``, ``2.0``, ``"2"``) within ``minimum..maximum`` (inclusive); ``None`` is ``default``.

    Booleans, fractions (``2.5``) and words are refused: an axis or a count is never any of those."""
    allowed = f"'{key}' must be an integer{_range_text(minimum, maximum)}"
    if value is None:
        if default is None:
            raise InvalidRequestError(f"{allowed}; it is missing.")
        return default
    number: Optional[int] = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise InvalidRequestError(f"{allowed}, got {shortened_repr(value)}.")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise InvalidRequestError(f"{allowed}, got {number}.")
    return number


def parse_number(
    value: Any,
    key: str,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    default: Optional[float] = None,
) -> float:
    """A finite number (``0.5``, ``"0.5"``) within ``minimum..maximum``; ``None`` is ``default``."""
    if value is None:
        if default is None:
            raise InvalidRequestError(f"'{key}' must be a number{_range_text(minimum, maximum)}; it is missing.")
        return default
    number: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None:
        allowed = f"'{key}' must be a number{_range_text(minimum, maximum)}"
        raise InvalidRequestError(f"{allowed}, got {shortened_repr(value)}.")
    if not math.isfinite(number):
        raise InvalidRequestError(f"'{key}' must be a finite number, got {shortened_repr(value)}.")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise InvalidRequestError(f"'{key}' must be a number{_range_text(minimum, maximum)}, got {number}.")
    return number


def parse_choice(value: Any, key: str, choices: Sequence[Choice], default: Optional[Choice] = None) -> Choice:
    """One of ``choices`` (compared as sent); ``None`` is ``default``."""
    if value is None and default is not None:
        return default
    for choice in choices:
        if isinstance(value, type(choice)) and value == choice:
            return choice
    listed = ", ".join(repr(c) for c in choices)
    raise InvalidRequestError(f"'{key}' must be one of {listed}, got {shortened_repr(value)}.")


def parse_text(value: Any, key: str, default: Optional[str] = None, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A non-empty name or id: a string (or an integer, which some clients send for ids); ``None`` or an
    empty string is ``default`` when there is one."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise InvalidRequestError(f"'{key}' must be a non-empty string; it is missing or empty.")
        return default
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{key}' must be a string, got {shortened_repr(value)}.")
    if len(value) > max_length:
        raise InvalidRequestError(f"'{key}' is {len(value)} characters long; at most {max_length} are allowed.")
    if "\x00" in value:
        raise InvalidRequestError(f"'{key}' must not contain a NUL character.")
    return value


def optional_text(value: Any, key: str, max_length: int = MAX_TEXT_LENGTH) -> Optional[str]:
    """:func:`parse_text`, or ``None`` when the value is missing or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_text(value, key, max_length=max_length)


def parse_json_object(text: Any, key: str = "params") -> Dict[str, Any]:
    """A JSON object sent as text (MONAI Label's multipart ``params`` field); empty text is ``{}``.

    Text that is not JSON at all is a 400 (the request is malformed); JSON of another type is a 422."""
    if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
        return {}
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError; bytes that are not UTF-8 too
        raise InvalidRequestError(
            f"'{key}' is not valid JSON ({error}); send a JSON object such as {{\"foreground\": [[10, 20, 5]]}}.",
            status=400,
        ) from None
    except RecursionError:
        raise InvalidRequestError(f"'{key}' is nested too deeply to be read.", status=400) from None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"'{key}' must be a JSON object {{\"key\": value, ...}}, "
            f"got {type(value).__name__} {shortened_repr(value)}."
        )
    return value
