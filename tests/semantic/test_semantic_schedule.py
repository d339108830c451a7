"""Parsing of the in-server retraining schedule."""

from __future__ import annotations

import datetime

import pytest

from medicosam_app.errors import InvalidRequestError
from medicosam_app.semantic.schedule import build_scheduler


@pytest.mark.parametrize("text, unit, interval", [("every 90s", "seconds", 90), ("every 30m", "minutes", 30),
                                                   ("every 6h", "hours", 6), ("daily 02:00", "days", 1)])
def test_schedules_are_understood(text, unit, interval):
    scheduler = build_scheduler(text, lambda: None)
    (job,) = scheduler.jobs
    assert job.unit == unit and job.interval == interval
    if text.startswith("daily"):
        assert job.at_time == datetime.time(2, 0)


@pytest.mark.parametrize("text", ["", "off", None])
def test_no_schedule(text):
    assert build_scheduler(text, lambda: None) is None


@pytest.mark.parametrize("text", ["nightly", "daily 25:00", "every 0m", "every 5 days"])
def test_bad_schedules_say_what_is_understood(text):
    with pytest.raises(InvalidRequestError, match="retrain_schedule"):
        build_scheduler(text, lambda: None)
