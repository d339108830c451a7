"""``GET /metrics``: the server in Prometheus' text format (its permission rule: admin, or a caller on this machine).

Two kinds of figures:

- counted as requests pass (:class:`RequestMetrics`, an ASGI middleware): requests and their seconds by route
  template (``/infer/{model}``, never the raw path, so ids do not become labels), method and status class, and the
  inference seconds by model;
- read when scraped (:class:`StateCollector`): the model's state, the embedding cache (entries, bytes, hits,
  misses, disk hits), the prefetch queue, the semantic and interactive decoder versions served, training runs,
  GPU memory when there is a GPU. The process's own CPU, memory and open files come from prometheus-client.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily
from prometheus_client.process_collector import ProcessCollector

from medicosam_app.security.permissions import rule_for

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class RequestMetrics:
    """Counts and times every HTTP request, labelled by the route template that serves it."""

    def __init__(self, registry: CollectorRegistry, models: Callable[[], Iterable[str]], api_prefix: str = "") -> None:
        self.requests = Counter("medicosam_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=registry)
        self.seconds = Histogram("medicosam_http_request_seconds", "Seconds from request to the end of the answer",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.infer_seconds = Histogram("medicosam_infer_seconds", "Seconds of an /infer request, by model",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.models = models
        self.api_prefix = api_prefix

    def route_of(self, method: str, path: str) -> str:
        rule = rule_for(method, path, self.api_prefix)
        return rule.route if rule is not None else "other"

    def model_of(self, path: str) -> Optional[str]:
        """The model an ``/infer/<model>`` path names, if the server has it (unknown names are not labels)."""
        relative = path[len(self.api_prefix):] if self.api_prefix and path.startswith(self.api_prefix) else path
        if not relative.startswith("/infer/"):
            return None
        name = relative.rstrip("/").rsplit("/", 1)[-1]
        return name if name in set(self.models()) else None

    def observe(self, method: str, path: str, status: int, elapsed: float) -> None:
        route = self.route_of(method, path)
        self.requests.labels(method, route, f"{status // 100}xx").inc()
        self.seconds.labels(method, route).observe(elapsed)
        model = self.model_of(path)
        if model is not None and method == "POST":
            self.infer_seconds.labels(model).observe(elapsed)


class MeasuredRequests:
    """The ASGI middleware feeding :class:`RequestMetrics` (outermost, so refusals are counted too)."""

    def __init__(self, app: Callable[..., Any], metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def watch(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.observe(scope["method"], scope["path"], status["code"], time.perf_counter() - started)


class StateCollector:
    """Figures read from the running server each time Prometheus scrapes (``state()`` returns them)."""

    def __init__(self, state: Callable[[], Mapping[str, Any]]) -> None:
        self.state = state

    def collect(self):  # noqa: ANN201 - prometheus-client's collector protocol
        state = self.state()
        model = GaugeMetricFamily("medicosam_model_ready", "1 when the MedicoSAM model is loaded", labels=["state"])
        model.add_metric([str(state.get("model_state", "unknown"))], 1.0 if state.get("model_ready") else 0.0)
        yield model
        cache = state.get("embedding_cache") or {}
        for key, text in (("entries", "embeddings held in memory"), ("bytes", "bytes of embeddings in memory"),
                          ("max_bytes", "the memory cache's limit")):
            if key in cache:
                yield GaugeMetricFamily(f"medicosam_embedding_cache_{key}", text, value=float(cache[key]))
        for key, text in (("hits", "embedding lookups found in memory"), ("misses", "embedding lookups not in memory"),
                          ("disk_hits", "embeddings read back from the disk cache")):
            if key in cache:
                yield CounterMetricFamily(f"medicosam_embedding_cache_{key}", text, value=float(cache[key]))
        disk = cache.get("disk") or {}
        if "bytes" in disk:
            yield GaugeMetricFamily("medicosam_embedding_disk_bytes", "bytes of embeddings on disk", value=float(disk["bytes"]))
        prefetch = state.get("prefetch") or {}
        if prefetch:
            yield GaugeMetricFamily("medicosam_prefetch_queued_slices", "slices waiting to be encoded ahead of clicks",
                                    value=float(prefetch.get("queued", 0)))
            yield CounterMetricFamily("medicosam_prefetch_encoded_slices", "slices encoded ahead of clicks",
                                      value=float(prefetch.get("encoded", 0)))
        versions = GaugeMetricFamily("medicosam_decoder_serving", "the decoder version each learner serves (1)",
                                     labels=["learner", "version"])
        for learner, version in (state.get("serving") or {}).items():
            versions.add_metric([learner, str(version or "none")], 1.0)
        yield versions
        training = GaugeMetricFamily("medicosam_training_running", "1 while a training round runs")
        training.add_metric([], 1.0 if state.get("training_running") else 0.0)
        yield training
        if state.get("gpu_bytes") is not None:
            yield GaugeMetricFamily("medicosam_gpu_allocated_bytes", "GPU memory held by tensors",
                                    value=float(state["gpu_bytes"]))


def serve_metrics(app: FastAPI, registry: CollectorRegistry, metrics: RequestMetrics) -> None:
    """Add ``/metrics`` and put :class:`MeasuredRequests` outside every other middleware of the running app
    (rebuilt before the first request, as the access control is)."""
    from starlette.middleware import Middleware

    app.user_middleware = [Middleware(MeasuredRequests, metrics=metrics)] + [
        entry for entry in app.user_middleware if entry.cls is not MeasuredRequests
    ]
    app.middleware_stack = app.build_middleware_stack()
    router = APIRouter()

    @router.get("/metrics", tags=["Health"], summary="Prometheus metrics (admin, or a caller on this machine)")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)


def new_registry(state: Callable[[], Mapping[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(StateCollector(state))
    return registry
