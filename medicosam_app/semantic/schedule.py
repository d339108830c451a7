"""The in-server retraining schedule: ``"daily 02:00"`` (server local time) or ``"every 30m"`` / ``"every 6h"``
/ ``"every 90s"``. The job itself decides whether there is anything to train."""

from __future__ import annotations

import logging
import re
import threading
from typing import Callable, Optional

import schedule

from ..errors import InvalidRequestError

logger = logging.getLogger(__name__)

_DAILY = re.compile(r"^daily\s+(\d{1,2}:\d{2})$")
_EVERY = re.compile(r"^every\s+(\d+)\s*([smh])$")


def build_scheduler(text: str, job: Callable[[], None]) -> Optional[schedule.Scheduler]:
    """A scheduler running ``job`` as ``text`` says; None for an empty text (no schedule)."""
    text = (text or "").strip().lower()
    if not text or text in ("off", "none"):
        return None
    scheduler = schedule.Scheduler()
    daily, every = _DAILY.match(text), _EVERY.match(text)
    if daily:
        hours, minutes = (int(x) for x in daily.group(1).split(":"))
        if hours > 23 or minutes > 59:
            raise InvalidRequestError(f"retrain_schedule '{text}': no such time of day.")
        scheduler.every().day.at(f"{hours:02d}:{minutes:02d}").do(job)
    elif every:
        count, unit = int(every.group(1)), every.group(2)
        if count < 1:
            raise InvalidRequestError(f"retrain_schedule '{text}': the interval must be at least 1.")
        unit_name = {"s": "seconds", "m": "minutes", "h": "hours"}[unit]
        getattr(scheduler.every(count), unit_name).do(job)  # the unit properties set state: touch only one
    else:
        raise InvalidRequestError(
            f"retrain_schedule '{text}' is not understood; use e.g. 'daily 02:00', 'every 6h' or 'every 30m'."
        )
    return scheduler


def run_in_background(scheduler: schedule.Scheduler, tick_s: float = 1.0) -> threading.Event:
    """Run the scheduler's due jobs in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(tick_s):
            try:
                scheduler.run_pending()
            except Exception:  # a failing job must not end the schedule
                logger.exception("Scheduled retraining failed")

    threading.Thread(target=loop, name="medicosam-retrain-schedule", daemon=True).start()
    return stop
