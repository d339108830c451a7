"""Calls to the PACS, bounded and answered in words: a timeout on every call, and a PACS that is away turned into
503 + Retry-After (images opened before keep serving from the cache) rather than a hang or a 500."""

from __future__ import annotations

import requests

from medicosam_app.errors import PacsError

PACS_RETRY_AFTER_S = 10
PACS_TIMEOUT_S = (5.0, 60.0)  # to connect; between two reads (a large series streams for longer, never idle)


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' adapter protocol
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = PACS_TIMEOUT_S
        return super().send(request, **kwargs)


def bound_pacs_calls(session: requests.Session) -> requests.Session:
    """Every call through ``session`` without a timeout of its own gets :data:`PACS_TIMEOUT_S` (dicomweb-client
    sets none: a PACS that accepts the connection and never answers would hold a click for ever)."""
    for prefix in ("http://", "https://"):
        session.mount(prefix, _TimeoutAdapter())
    return session


def pacs_failure(what: str, error: requests.RequestException) -> PacsError:
    """A PACS that is away (refused, timed out, cut off) is a 503 to retry later: images opened before keep
    serving clicks from the cache. A PACS that answered with an error is a 502."""
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return PacsError(
            f"{what}: the PACS is not answering ({type(error).__name__}). Try again when it is back; images "
            "opened before keep working.", away=True, retry_after_s=PACS_RETRY_AFTER_S)
    return PacsError(f"{what}: {error}")
