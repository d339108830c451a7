"""Log records of bounded size, whatever a request carried.

MONAI Label logs several requests verbatim (``Infer Request: …``, ``Active Learning Request: …``, ``Next
sample: …``, ``Save Label params: …``, a background task's command line). A client that sends megabytes
there filled ``logs/app.log`` (rotated at 10 MB, ten backups) in a second and pushed every earlier line out
of the rotation. :class:`ShortenLongRecords` is put on every handler the logging configuration made
(MONAI Label's ``logging.json``: the console, ``logs/app.log`` and the background tasks' handlers), so
each record keeps the head of its message and says how much was cut.
"""

from __future__ import annotations

import logging
from typing import Iterator

MAX_MESSAGE_CHARS = 4096
_TRACEBACK_HEAD = 1024  # a traceback keeps its head and its tail: the exception's message is at the end


def shortened(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` characters, with a note of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit} more characters not logged]"


def shortened_traceback(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = min(_TRACEBACK_HEAD, limit // 2)
    tail = limit - head
    return f"{text[:head]}\n… [{len(text) - limit} characters of the traceback not logged] …\n{text[-tail:]}"


class ShortenLongRecords(logging.Filter):
    """A handler filter: messages over ``limit`` characters keep their head and say how much was cut; a
    traceback over it keeps head and tail. Records within the limit pass untouched (``args`` included, which
    some formatters read)."""

    def __init__(self, limit: int = MAX_MESSAGE_CHARS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args or not isinstance(record.msg, str) or len(record.msg) > self.limit:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken format is the handler's to report, as without us
                return True
            if len(message) > self.limit:
                record.msg, record.args = shortened(message, self.limit), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and len(record.exc_text) > self.limit:
            record.exc_text = shortened_traceback(record.exc_text, self.limit)
        return True


def configured_handlers() -> Iterator[logging.Handler]:
    """Every handler attached to the root logger or to any named logger, each once."""
    seen = set()
    loggers = [logging.getLogger()] + [
        logger for logger in list(logging.Logger.manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if id(handler) not in seen:
                seen.add(id(handler))
                yield handler


def limit_log_records(limit: int = MAX_MESSAGE_CHARS) -> int:
    """Put :class:`ShortenLongRecords` on every configured handler that lacks one; returns how many got it."""
    added = 0
    for handler in configured_handlers():
        if not any(isinstance(f, ShortenLongRecords) for f in handler.filters):
            handler.addFilter(ShortenLongRecords(limit))
            added += 1
    return added
