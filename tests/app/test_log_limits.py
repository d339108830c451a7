"""Log records of bounded size: the filter the app puts on MONAI Label's log handlers (apps/medicosam/lib/log_limits.py)."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps" / "medicosam"))
from lib.http.log_limits import MAX_MESSAGE_CHARS, ShortenLongRecords, limit_log_records  # noqa: E402


@pytest.fixture()
def captured():
    """A logger with one stream handler in the format MONAI Label's logging.json gives app.log."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s] (%(name)s) - %(message)s"))
    logger = logging.getLogger("test_log_limits")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, handler, stream
    logger.handlers[:] = []


def test_a_long_message_keeps_its_head_and_says_how_much_was_cut(captured):
    logger, handler, stream = captured
    handler.addFilter(ShortenLongRecords())
    message = f"Active Learning Request: {{'client_id': '{'z' * 20_000}'}}"
    logger.info(message)
    line = stream.getvalue().rstrip("\n")
    assert len(line) < MAX_MESSAGE_CHARS + 200
    assert message[:MAX_MESSAGE_CHARS] in line
    assert line.endswith(f"[{len(message) - MAX_MESSAGE_CHARS} more characters not logged]")


def test_percent_arguments_are_measured_after_formatting(captured):
    logger, handler, stream = captured
    handler.addFilter(ShortenLongRecords(limit=100))
    logger.info("Next sample: %s", {"id": "x" * 500})
    assert "more characters not logged" in stream.getvalue() and len(stream.getvalue()) < 300


def test_short_records_pass_untouched_arguments_included(captured):
    logger, handler, stream = captured
    handler.addFilter(ShortenLongRecords(limit=100))
    seen = []
    handler.addFilter(lambda record: seen.append(record.args) or True)
    logger.info("%s - %s", "GET", "/info/")
    assert stream.getvalue().endswith("- GET - /info/\n") and seen == [("GET", "/info/")]


def test_a_long_traceback_keeps_head_and_tail(captured):
    logger, handler, stream = captured
    handler.addFilter(ShortenLongRecords(limit=2000))
    try:
        raise ValueError("bad value " + "y" * 50_000 + " END-OF-MESSAGE")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    assert len(text) < 2500 and "Traceback" in text and "END-OF-MESSAGE" in text
    assert "characters of the traceback not logged" in text


def test_installed_on_every_configured_handler_once(captured):
    logger, handler, _ = captured
    root_handler = logging.NullHandler()
    logging.getLogger().addHandler(root_handler)
    try:
        limit_log_records()
        limit_log_records()
        for each in (handler, root_handler):
            assert sum(isinstance(f, ShortenLongRecords) for f in each.filters) == 1
    finally:
        logging.getLogger().removeHandler(root_handler)
