"""Training rounds in the audit trail: the round and, when it happened, the promotion, under the user who asked
(training runs in a process of its own, so the request carries the name: see lib/guards/endpoints.py,
check_training)."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from medicosam_app.security.audit import AuditLog
from medicosam_app.security.audit_record import AuditRecord

logger = logging.getLogger(__name__)


def audit_training(audit: AuditLog, request: Mapping[str, Any], result: Any, seconds: float, version_key: str) -> None:
    """Append the round ``request`` asked for and its ``result`` (a dict with ``version``) to ``audit``, the
    version under ``version_key`` (``semantic_version``, ``interactive_version``); a trail that cannot be
    written is logged, never raised into the training answer."""
    if not isinstance(result, dict) or "version" not in result:
        return
    common = dict(
        endpoint=f"POST /train/{request.get('model')}", task=str(request.get("model")),
        user=request.get("requested_by") or "server", latency_s=round(seconds, 3),
    )
    try:
        audit.append(AuditRecord(
            event="train", status=str(result.get("status")), model={version_key: result.get("version")},
            result={k: result.get(k) for k in ("new_labels", "promoted", "reason")}, **common,
        ))
        if result.get("promoted"):
            audit.append(AuditRecord(
                event="promote", status="ok", model={version_key: result.get("version")},
                detail=str(result.get("reason")), **common,
            ))
    except OSError:
        logger.exception("Could not append the training round to the audit trail")
