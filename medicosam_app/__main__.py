"""``python -m medicosam_app <command>``: work for cron jobs and administrators, without the server."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from .errors import MedicoSamError

if TYPE_CHECKING:
    from .model.provider import ModelProvider
    from .semantic.distributed import DistContext
    from .settings import Settings


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (default: the MEDICOSAM_* environment, as the server reads it)")
    group.add_argument("--checkpoint", help="MedicoSAM checkpoint file")
    group.add_argument("--cache-dir", help="weights and embedding cache folder (default ~/.cache/medicosam)")
    group.add_argument("--embedding-disk-dir", help="embedding cache folder (default <cache-dir>/embeddings)")
    group.add_argument("--intensity", choices=["volume", "slice", "percentile", "window"])
    group.add_argument("--window-level", type=float)
    group.add_argument("--window-width", type=float)
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    group.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    group.add_argument("--no-download", action="store_true", help="never download the published weights")


def _conf(args: argparse.Namespace) -> Dict[str, str]:
    keys = ["checkpoint", "cache_dir", "embedding_disk_dir", "intensity", "window_level", "window_width", "precision", "device"]
    conf = {key: str(getattr(args, key)) for key in keys if getattr(args, key) is not None}
    if args.no_download:
        conf["download"] = "false"
    return conf


def run_precompute(args: argparse.Namespace) -> int:
    from .embeddings.precompute import Shard, find_images, precompute
    from .services import build_model_provider, build_slice_embedder
    from .settings import Settings

    settings = Settings.from_conf(_conf(args))
    if settings.embedding_disk_dir is None:
        print("precompute needs the disk embedding cache; it is switched off (embedding_disk_dir).", file=sys.stderr)
        return 2
    try:
        shard = Shard.parse(args.shard) if args.shard else Shard.from_torchrun()
    except ValueError as error:
        print(f"precompute: {error}", file=sys.stderr)
        return 2
    all_images = find_images(args.studies)
    if not all_images:
        print(f"No images (*.nii.gz, *.nii, *.nrrd, *.mha) in {args.studies}; nothing to do.")
        return 0
    images = shard.select(all_images)
    if shard.count > 1:
        print(f"precompute: shard {shard}: {len(images)} of {len(all_images)} images")
        if settings.device is None and torch_cuda_devices() > 1:  # one GPU per process under torchrun
            settings = dataclasses.replace(settings, device=f"cuda:{int(os.environ.get('LOCAL_RANK', shard.index)) % torch_cuda_devices()}")
    if not images:
        return 0
    models = build_model_provider(settings)
    models.predictor()  # load now: a missing checkpoint is reported before any work
    embedder = build_slice_embedder(settings, models, memory_mb=0)  # straight to disk, keep no RAM
    summary = precompute(images, embedder, axes=args.axis, batch_size=args.batch_size, progress=not args.quiet)
    print(f"precompute: {summary.line()} → {settings.embedding_disk_dir}")
    return 1 if summary.failed and summary.images == 0 else 0


def _semantic_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("semantic model")
    group.add_argument("--semantic-dir", help="versions of the semantic decoder (default <cache-dir>/semantic)")
    group.add_argument("--labels", help="classes: 'liver,spleen' or JSON {\"liver\": 1} (default: the server's)")


def _semantic_conf(args: argparse.Namespace) -> Dict[str, str]:
    conf = _conf(args) if hasattr(args, "checkpoint") else {}
    for key in ("semantic_dir", "interactive_dir", "labels", "cache_dir"):
        if getattr(args, key, None):
            conf[key] = str(getattr(args, key))
    return conf


_TRAINING_FLAGS = ("epochs", "learning_rate", "batch_size", "max_slices_per_image", "val_fraction", "initial_features", "seed")


def run_retrain(args: argparse.Namespace) -> int:
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc)
    import json

    from .semantic.config import TrainingConfig
    from .semantic.distributed import DistContext
    from .semantic.studies import find_labelled_studies
    from .services import build_model_provider, build_retrainer, build_slice_embedder
    from .settings import Settings

    settings = Settings.from_conf(_semantic_conf(args))
    overrides = {key: getattr(args, key) for key in _TRAINING_FLAGS if getattr(args, key) is not None}
    if args.no_warm_start:
        overrides["warm_start"] = False
    config = TrainingConfig.from_mapping(overrides, base=settings.training)
    if not Path(args.studies).is_dir():
        print(f"retrain: {args.studies} is not a datastore folder", file=sys.stderr)
        return 2
    studies = find_labelled_studies(Path(args.studies))
    dist = DistContext.from_env()
    settings, models = models_agreeing_on_precision(settings, dist, build_model_provider)
    embedder = build_slice_embedder(settings, models, memory_mb=0)
    retrainer = build_retrainer(settings, models, embedder)
    try:
        summary = retrainer.run(studies, config, min_new_labels=args.min_new_labels, force=args.force, progress=not args.quiet)
    finally:
        dist.close()
    if dist.is_main:
        print(json.dumps(summary.to_dict()) if args.json else summary.line())
    return 0


def models_agreeing_on_precision(
    settings: "Settings", dist: "DistContext", build: Callable[["Settings"], "ModelProvider"]
) -> Tuple["Settings", "ModelProvider"]:
    """``(settings, models)`` with one encoder precision in every process of a distributed run.

    Each process reads slices the others encoded, under a key that carries the precision, so all must embed
    in the same one; with ``auto`` each would measure on its own, and on a busy machine they can disagree.
    Rank 0 measures (or recalls) it and the others take its choice. A forced precision is used as it is."""
    if not dist.active or settings.precision != "auto":
        return settings, build(settings)
    models = build(settings) if dist.is_main else None
    chosen = dist.broadcast(models.base_predictor().precision if models is not None else None)
    settings = dataclasses.replace(settings, precision=chosen)
    return settings, models if models is not None else build(settings)


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same command in ``nproc`` processes under torchrun (DDP; gloo on CPUs)."""
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:  # torchrun would take --nproc for its own option
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        skip = arg == "--nproc"
        if not skip:
            args.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "medicosam_app", *args]
    return subprocess.call(command)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.command import run

    return run(args, _semantic_conf(args))


def run_finetune(args: argparse.Namespace) -> int:
    from .finetune.command import run

    return run(args, _semantic_conf(args))


def run_models(args: argparse.Namespace) -> int:
    import json

    from .semantic.versions import VersionStore
    from .settings import Settings

    settings = Settings.from_conf(_semantic_conf(args))
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

    from .security.audit import AuditLog, AuditRecord

    AuditLog(settings.audit_dir).append(AuditRecord(
        event=event, endpoint=f"python -m medicosam_app models {event}", status="ok",
        user=getpass.getuser(), role="admin", task=f"medicosam_{kind}", model={f"{kind}_version": version},
    ))


def _read_new_password(username: str) -> str:
    """A new password: one line of standard input when it is not a terminal (scripts, tests), else typed
    twice at a prompt that does not echo."""
    import getpass

    from .security.users import InvalidPasswordError, check_password

    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line.strip("\r\n"):
            raise InvalidPasswordError("no password on standard input: pipe one line, or run it in a terminal")
        return line.rstrip("\r\n")
    first = getpass.getpass(f"New password for {username}: ")
    check_password(first)  # say what is wrong before asking for the repeat
    if getpass.getpass("Repeat it: ") != first:
        raise InvalidPasswordError("the two passwords differ; nothing was changed")
    return first


def run_users(args: argparse.Namespace) -> int:
    import json

    from .security.users import UserError, UserStore
    from .settings import Settings

    where = f"users {args.action}"
    users_file = Settings.from_conf({"users_file": args.users_file or ""}).users_file
    if users_file is None:
        print(f"{where}: no users file: pass --users-file PATH or set MEDICOSAM_USERS_FILE", file=sys.stderr)
        return 2
    store = UserStore(users_file)
    try:
        if args.action == "add":
            password = _read_new_password(args.name)
            user = store.add(args.name, password, args.role)
            print(f"Added {user.username} ({user.role.label}) to {store.path}.")
        elif args.action == "passwd":
            store.require(args.name)  # an unknown name fails before anyone types a password
            store.set_password(args.name, _read_new_password(args.name))
            print(f"New password for {args.name}; their earlier sign-ins no longer count.")
        elif args.action == "remove":
            store.remove(args.name)
            print(f"Removed {args.name} from {store.path}.")
        else:
            users = store.list()
            if args.json:
                print(json.dumps([user.to_dict() for user in users], indent=2))
            elif not users:
                print(f"No users in {store.path}.")
            for user in users if not args.json else []:
                print(f"{user.username:<24} {user.role.label:<10} created {user.created}  "
                      f"password changed {user.password_changed}")
    except UserError as error:
        print(f"{where}: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print(f"\n{where}: cancelled; nothing was changed", file=sys.stderr)
        return 2
    return 0


def run_audit(args: argparse.Namespace) -> int:
    import json

    from .security.audit import AuditLog
    from .settings import Settings

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


def run_permissions(args: argparse.Namespace) -> int:
    from .security.permissions import markdown_table

    print(markdown_table(), end="")
    return 0


def torch_cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medicosam_app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    pre = commands.add_parser("precompute", help="encode every slice of a datastore into the disk embedding cache")
    pre.add_argument("--studies", required=True, help="datastore folder (or one image file)")
    pre.add_argument("--axis", type=int, choices=[0, 1, 2], action="append",
                     help="array axis to slice along (repeatable; default 2, the server's default)")
    pre.add_argument("--batch-size", type=int, default=None,
                     help="slices per encoder pass (default: 8 on a GPU, 1 on a CPU, where batches gain nothing)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.add_argument("--shard", metavar="I/N",
                     help="embed only shard I of N (machines sharing one disk cache each take one; under torchrun "
                     "each process takes its RANK of WORLD_SIZE and its own GPU)")
    _settings_arguments(pre)
    pre.set_defaults(run=run_precompute)

    re = commands.add_parser(
        "retrain",
        help="retrain the semantic decoder when enough new final labels exist (for cron / systemd timers)",
        description="Train a new version of the semantic decoder from the datastore's final labels, if at least "
        "--min-new-labels of them are new since the last version; promote it if its validation Dice is at least "
        "the serving version's. Exits 0 with a one-line summary, also when there is nothing to do.",
    )
    re.add_argument("--studies", required=True, help="datastore folder (images, and labels/final/)")
    re.add_argument("--min-new-labels", type=int, default=1, help="train only if this many labels are new (default 1)")
    re.add_argument("--force", action="store_true", help="train even without new labels")
    re.add_argument("--nproc", type=int, default=1, help="processes for DDP training via torchrun (one per GPU)")
    re.add_argument("--epochs", type=int)
    re.add_argument("--learning-rate", type=float)
    re.add_argument("--batch-size", type=int)
    re.add_argument("--max-slices-per-image", type=int)
    re.add_argument("--val-fraction", type=float)
    re.add_argument("--initial-features", type=int, help="decoder width (64, the published decoder's)")
    re.add_argument("--seed", type=int)
    re.add_argument("--no-warm-start", action="store_true", help="start from the released decoder / scratch")
    re.add_argument("--json", action="store_true", help="print the summary as JSON")
    re.add_argument("--quiet", action="store_true", help="no progress bars")
    _settings_arguments(re)
    _semantic_arguments(re)
    re.set_defaults(run=run_retrain)

    ev = commands.add_parser(
        "evaluate",
        help="simulate annotators on the final labels: Dice per click, NoC@85/90, 3D propagation Dice",
        description="Every connected component of every class of the final labels (20 pixels or more) is prompted "
        "with a box and with a point, then corrected click by click as the chosen protocol says. Prints a table; "
        "--json and --csv keep every object's trace. Embeddings come from the shared cache.",
    )
    from .evaluation.command import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(ev)
    _settings_arguments(ev)
    _semantic_arguments(ev)
    ev.set_defaults(run=run_evaluate)

    fin = commands.add_parser(
        "finetune",
        help="finetune the interactive decoder on final labels with simulated clicks (for cron / systemd timers)",
        description="Train the prompt encoder and mask decoder on cached embeddings with simulated prompts, from "
        "the final labels, if at least --min-new-labels of them are new since the last version; store the result as "
        "a version and serve it only if, on held-out images, it needs no more clicks to reach 90%% Dice and ends no "
        "worse than the serving decoder. Exits 0 with a one-line summary, also when there is nothing to do.",
    )
    from .finetune.command import add_arguments as add_finetune_arguments

    add_finetune_arguments(fin)
    _settings_arguments(fin)
    _semantic_arguments(fin)
    fin.add_argument("--interactive-dir", help="versions of the interactive decoder (default <cache-dir>/interactive)")
    fin.set_defaults(run=run_finetune)

    mod = commands.add_parser("models", help="list, promote or roll back versions of the semantic or interactive decoder")
    mod.add_argument("action", choices=["list", "promote", "rollback"])
    mod.add_argument("version", nargs="?", help="for promote: the version id, e.g. v0003")
    mod.add_argument("--kind", choices=["semantic", "interactive"], default="semantic",
                     help="which model's versions (default semantic)")
    mod.add_argument("--interactive-dir", help="versions of the interactive decoder (default <cache-dir>/interactive)")
    mod.add_argument("--json", action="store_true")
    mod.add_argument("--cache-dir", help="default ~/.cache/medicosam")
    _semantic_arguments(mod)
    mod.set_defaults(run=run_models)

    users_file = argparse.ArgumentParser(add_help=False)
    users_file.add_argument("--users-file", help="the users file (default: $MEDICOSAM_USERS_FILE)")
    users = commands.add_parser(
        "users", help="add, list, remove users or change a password (authentication is on with a users file)",
        description="Users of the server and their roles. Passwords are read from standard input (one line) "
        "when it is not a terminal, else asked twice. Exits 2 with one line on stderr when a name is taken, "
        "unknown or not allowed.",
    )
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", parents=[users_file], help="add a user")
    add.add_argument("name", help="user name: letters, digits, '.', '_', '-'")
    add.add_argument("--role", required=True, choices=["annotator", "reviewer", "admin"])
    listing = actions.add_parser("list", parents=[users_file], help="list users and roles")
    listing.add_argument("--json", action="store_true")
    actions.add_parser("remove", parents=[users_file], help="remove a user").add_argument("name")
    actions.add_parser("passwd", parents=[users_file], help="set a user's password").add_argument("name")
    users.set_defaults(run=run_users)

    aud = commands.add_parser("audit", help="show the audit trail (who did what, when, on which image)")
    aud.add_argument("--user", help="only this user (or client_id when authentication is off)")
    aud.add_argument("--image", help="only this image id")
    aud.add_argument("--since", help="from this time: 2025-03-01, 2025-03-01T14:00 (local), ...Z (UTC), or 12h, 7d")
    aud.add_argument("--event", help="only this event: infer, label_save, train, promote, rollback, delete, ...")
    aud.add_argument("--json", action="store_true", help="JSON lines, as stored")
    aud.add_argument("--audit-dir", help="default: $MEDICOSAM_AUDIT_DIR or <cache-dir>/audit")
    aud.add_argument("--cache-dir", help="default ~/.cache/medicosam")
    aud.set_defaults(run=run_audit)

    perm = commands.add_parser("permissions", help="print the role each route needs (Markdown table)")
    perm.set_defaults(run=run_permissions)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "axis", None) is None and args.command == "precompute":
        args.axis = [2]
    try:
        return args.run(args)
    except (MedicoSamError, FileNotFoundError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
