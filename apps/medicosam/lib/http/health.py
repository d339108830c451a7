"""``GET /healthz`` and ``GET /readyz`` for load balancers, systemd and Kubernetes.

``/healthz`` answers while the process serves HTTP at all. ``/readyz`` runs the server's readiness checks
(the model loaded, the datastore or PACS answering, the cache disk writable) and answers 200 when all pass, else
503 with ``Retry-After``. Both are open without sign-in, so they say only which check failed and in a few
generic words — never a path, a URL, a patient or a user.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as CheckTimeout
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)

Check = Callable[[], Optional[str]]  # None when fine, else a short reason without secrets
CHECK_TIMEOUT_S = 4.0
RETRY_AFTER_S = 10


def disk_writable(folder: Path) -> Check:
    """A check that a small file can be created and removed in ``folder`` (the caches and labels live there)."""

    def check() -> Optional[str]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".readyz-", dir=folder)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError as error:
            return "not writable (disk full?)" if error.errno == 28 else "not writable"
        return None

    return check


def run_checks(checks: Mapping[str, Check], timeout_s: float = CHECK_TIMEOUT_S) -> Dict[str, str]:
    """Each check's outcome ("ok" or its reason), all at once, none waited for longer than ``timeout_s``."""
    outcome: Dict[str, str] = {}
    # Not a ``with`` block: its exit would wait for a check that hangs (a PACS that accepts and never answers).
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="readyz")
    futures = {name: pool.submit(check) for name, check in checks.items()}
    deadline = time.monotonic() + timeout_s
    for name, future in futures.items():
        try:
            reason = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except CheckTimeout:
            reason = f"no answer within {timeout_s:.0f} s"
        except Exception:  # noqa: BLE001 - a broken check makes the server unready, not the probe a 500
            logger.exception("readiness check %s failed", name)
            reason = "check failed (see the server log)"
        outcome[name] = "ok" if reason is None else reason
    pool.shutdown(wait=False, cancel_futures=True)
    return outcome


def add_health_routes(app: FastAPI, checks: Mapping[str, Check]) -> None:
    router = APIRouter()

    @router.get("/healthz", tags=["Health"], summary="Is the process alive?")
    async def healthz() -> Dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz", tags=["Health"], summary="Can the server serve? (model, datastore, disk)")
    def readyz() -> JSONResponse:
        outcome = run_checks(checks)
        ready = all(value == "ok" for value in outcome.values())
        return JSONResponse(
            {"ready": ready, "checks": outcome}, status_code=200 if ready else 503,
            headers=None if ready else {"Retry-After": str(RETRY_AFTER_S)},
        )

    app.include_router(router)
