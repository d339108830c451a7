"""``python -m medicosam_app audit``: show the audit trail (who did what, when, on which image)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Dict


def add_parser(commands: "argparse._SubParsersAction") -> None:
    aud = commands.add_parser("audit", help="show the audit trail (who did what, when, on which image)")
    aud.add_argument("--user", help="only this user (or client_id when authentication is off)")
    aud.add_argument("--image", help="only this image id")
    aud.add_argument("--since", help="from this time: 2025-03-01, 2025-03-01T14:00 (local), ...Z (UTC), or 12h, 7d")
    aud.add_argument("--event", help="only this event: infer, label_save, train, promote, rollback, delete, ...")
    aud.add_argument("--json", action="store_true", help="JSON lines, as stored")
    aud.add_argument("--audit-dir", help="default: $MEDICOSAM_AUDIT_DIR or <cache-dir>/audit")
    aud.add_argument("--cache-dir", help="default ~/.cache/medicosam")
    aud.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..security.audit import AuditLog
    from ..settings import Settings

    conf = {key: str(getattr(args, key)) for key in ("audit_dir", "cache_dir") if getattr(args, key)}
    log = AuditLog(Settings.from_conf(conf).audit_dir)
    logging.getLogger("medicosam_app.security.audit").setLevel(logging.ERROR)  # damaged lines: our own line below
    try:
        query = log.query(user=args.user, image=args.image, since=args.since, event=args.event)
    except ValueError as error:
        print(f"audit: {error}", file=sys.stderr)
        return 2
    shown = 0
    for record in query:
        shown += 1
        print(json.dumps(record) if args.json else _audit_line(record))
    if not shown and not args.json:
        print(f"No audit records match in {log.directory}.")
    if query.skipped:
        print(f"audit: skipped {query.skipped} damaged line(s)", file=sys.stderr)
    return 0


def _audit_line(record: Dict) -> str:
    """One record as a readable line: time, who, what, on which image, outcome, latency."""
    latency = record.get("latency_s")
    parts = [
        str(record.get("time", "?")),
        f"{record.get('user') or '-':<16}",
        f"{record.get('role') or '-':<9}",
        f"{record.get('event') or '-':<10}",
        f"{record.get('endpoint') or '-':<36}",
        f"image={record['image']}" if record.get("image") else "",
        f"status={record.get('status', '-')}",
        f"{latency:.3f}s" if isinstance(latency, (int, float)) else "",
        str(record.get("detail") or ""),
    ]
    return "  ".join(part for part in parts if part)
