"""What a hospital's operations need around the app: ``/healthz``, ``/readyz`` with the server's own checks,
``/metrics`` with its live state, request bodies bounded before they are read, work cancelled when its client
hangs up, 507 for a full disk, and labels the PACS did not take sent again. Wired onto the running FastAPI app
from the MedicoSAM app's start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

from monailabel.config import settings
from monailabel.utils.async_tasks.task import AsyncTask
from starlette.middleware import Middleware

from medicosam_app.model.checkpoints import default_cache_dir

from .datastore import MedicoSAMDicomWebDatastore, PendingSegs
from .http.body_limits import BodyLimits
from .http.disconnects import CancelOnDisconnect
from .http.health import add_health_routes, disk_writable
from .http.http_errors import answer_core_errors
from .http.metrics import RequestMetrics, new_registry, serve_metrics


def serve_service_endpoints(fastapi_app: Any, app: Any) -> None:
    """Health routes, the middlewares (metrics outermost, then body limits, then cancellation) and ``/metrics``
    for ``app``, the MedicoSAM app serving ``fastapi_app``."""
    checks = {
        "model": lambda: model_check(app),
        "datastore": lambda: datastore_check(app),
        "disk": disk_writable(Path(app.settings.cache_dir or default_cache_dir())),
    }
    add_health_routes(fastapi_app, checks)
    answer_core_errors(fastapi_app)
    prefix = settings.MONAI_LABEL_API_STR
    fastapi_app.user_middleware.insert(0, Middleware(CancelOnDisconnect, api_prefix=prefix))
    fastapi_app.user_middleware.insert(0, Middleware(BodyLimits, upload_bytes=lambda: app.session_max_bytes,
                                                     api_prefix=prefix))
    store = app.datastore()
    if isinstance(store, MedicoSAMDicomWebDatastore):  # the serving process alone sends labels kept for the PACS
        PendingSegs(store, every_s=max(1, app.settings.pacs_retry_s)).start()
    registry = new_registry(lambda: metrics_state(app))  # serve_metrics rebuilds the middleware stack
    serve_metrics(fastapi_app, registry, RequestMetrics(registry, lambda: list(app._infers), prefix))


def model_check(app: Any) -> Optional[str]:
    status = app.models.status
    return None if status.get("available") else str(status.get("state", "unavailable"))


def datastore_check(app: Any) -> Optional[str]:
    """The PACS answers a one-study search within 3 s; a folder datastore can be listed."""
    store = app.datastore()
    if isinstance(store, MedicoSAMDicomWebDatastore):
        return store.reachable(timeout_s=3.0)
    return None if os.access(app.studies, os.R_OK | os.X_OK) else "studies folder not readable"


def metrics_state(app: Any) -> Dict[str, Any]:
    """The live figures /metrics reads at each scrape."""
    status = app.models.status
    prefetcher = app.segmenter.prefetcher
    state: Dict[str, Any] = {
        "model_ready": bool(status.get("available")), "model_state": status.get("state"),
        "embedding_cache": app.segmenter.embeddings.stats,
        "prefetch": prefetcher.stats if prefetcher is not None else None,
        "serving": {"semantic": app.semantic.store.serving(), "interactive": app.finetuner.store.serving()},
        "training_running": AsyncTask.status("train", check_if_running=True)[0] is not None,
    }
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["gpu_bytes"] = torch.cuda.memory_allocated()
    return state
