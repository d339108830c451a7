"""What a hospital service needs around the endpoints: errors as HTTP, bounded bodies, cancellation, health,
metrics, shutdown, the thread pool."""

from typing import TYPE_CHECKING

from medicosam_app.lazy_exports import lazy_exports

from .body_limits import SMALL_BODY_BYTES, BodyLimits
from .disconnects import CancelOnDisconnect, cancellable_request, carry_cancellation
from .log_limits import MAX_MESSAGE_CHARS, ShortenLongRecords, limit_log_records
from .network import caller_is_local, is_loopback
from .shutdown import PromptShutdown, serving_host

if TYPE_CHECKING:
    from .health import add_health_routes, disk_writable
    from .http_errors import answer_core_errors, as_client_errors, as_http_errors
    from .metrics import RequestMetrics, new_registry, serve_metrics
    from .responsive_server import replace_endpoints, routers_of, serve_heavy_endpoints_in_threads, serve_in_threads

__all__ = [
    "MAX_MESSAGE_CHARS",
    "SMALL_BODY_BYTES",
    "BodyLimits",
    "CancelOnDisconnect",
    "PromptShutdown",
    "RequestMetrics",
    "ShortenLongRecords",
    "add_health_routes",
    "answer_core_errors",
    "as_client_errors",
    "as_http_errors",
    "caller_is_local",
    "cancellable_request",
    "carry_cancellation",
    "disk_writable",
    "is_loopback",
    "limit_log_records",
    "new_registry",
    "replace_endpoints",
    "routers_of",
    "serve_heavy_endpoints_in_threads",
    "serve_in_threads",
    "serve_metrics",
    "serving_host",
]

# Imported on first use (PEP 562), not here: these modules import fastapi (:mod:`.http_errors` also
# monailabel), which the other modules (stdlib and the core's cancellation) do without.
_LAZY = {
    "add_health_routes": ".health",
    "disk_writable": ".health",
    "answer_core_errors": ".http_errors",
    "as_client_errors": ".http_errors",
    "as_http_errors": ".http_errors",
    "RequestMetrics": ".metrics",
    "new_registry": ".metrics",
    "serve_metrics": ".metrics",
    "replace_endpoints": ".responsive_server",
    "routers_of": ".responsive_server",
    "serve_heavy_endpoints_in_threads": ".responsive_server",
    "serve_in_threads": ".responsive_server",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
