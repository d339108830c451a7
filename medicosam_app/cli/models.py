"""``python -m medicosam_app models``: list, promote or roll back versions of the semantic or interactive decoder."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional

from .common import semantic_arguments, semantic_conf

if TYPE_CHECKING:
    from ..settings import Settings


def add_parser(commands: "argparse._SubParsersAction") -> None:
    mod = commands.add_parser("models", help="list, promote or roll back versions of the semantic or interactive decoder")
    mod.add_argument("action", choices=["list", "promote", "rollback"])
    mod.add_argument("version", nargs="?", help="for promote: the version id, e.g. v0003")
    mod.add_argument("--kind", choices=["semantic", "interactive"], default="semantic",
                     help="which model's versions (default semantic)")
    mod.add_argument("--interactive-dir", help="versions of the interactive decoder (default <cache-dir>/interactive)")
    mod.add_argument("--json", action="store_true")
    mod.add_argument("--cache-dir", help="default ~/.cache/medicosam")
    semantic_arguments(mod)
    mod.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..learning.versions import VersionStore
    from ..settings import Settings

    settings = Settings.from_conf(semantic_conf(args))
    if args.kind == "interactive":
        store = VersionStore(settings.interactive_dir, what="interactive model")
    else:
        store = VersionStore(settings.semantic_dir)
    if args.action == "list":
        versions = store.list()
        if args.json:
            print(json.dumps(versions, indent=2))
        elif not versions:
            print(f"No {store.what} versions in {store.root}.")
        for meta in versions if not args.json else []:
            metrics = meta.get("metrics", {})
            if args.kind == "interactive":
                gate = metrics.get("gate", {}).get("candidate", {})
                score = f"NoC@90 {_number(gate.get('noc90'), 2)}  final Dice {_number(gate.get('dice_final'), 4)}"
            else:
                score = f"Dice {_number(metrics.get('val_dice'), 4)}"
            print(
                f"{'*' if meta['serving'] else ' '} {meta['version']}  {meta.get('created', '')}  "
                f"{score}  parent {meta.get('parent') or '-'}  "
                f"{len(meta.get('train_images', []))} train / {len(meta.get('val_images', []))} val images  "
                f"{'promoted' if meta.get('promoted') else 'not promoted'}: {meta.get('promotion', '')}"
            )
        return 0
    if args.action == "promote":
        if not args.version:
            print("models promote: name the version, e.g. v0003", file=sys.stderr)
            return 2
        store.promote(args.version, "promoted by an administrator")
        _audit_model_change(settings, "promote", args.version, args.kind)
        print(f"Serving {store.what} {args.version}.")
        return 0
    serving = store.rollback()
    _audit_model_change(settings, "rollback", serving, args.kind)
    print(f"Rolled back; serving {store.what} {serving}.")
    return 0


def _number(value: Optional[float], digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _audit_model_change(settings: Settings, event: str, version: Optional[str], kind: str = "semantic") -> None:
    """An administrator's promotion or rollback from the command line, under their login name."""
    import getpass

    from ..security.audit import AuditLog
    from ..security.audit_record import AuditRecord

    AuditLog(settings.audit_dir).append(AuditRecord(
        event=event, endpoint=f"python -m medicosam_app models {event}", status="ok",
        user=getpass.getuser(), role="admin", task=f"medicosam_{kind}", model={f"{kind}_version": version},
    ))
