"""``python -m medicosam_app retrain``: a new version of the semantic decoder from the datastore's final labels
(for cron / systemd timers), in one process or several under torchrun."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Tuple

from .common import semantic_arguments, semantic_conf, settings_arguments

if TYPE_CHECKING:
    from ..model.provider import ModelProvider
    from ..semantic.distributed import DistContext
    from ..settings import Settings

FLAGS = ("epochs", "learning_rate", "batch_size", "max_slices_per_image", "val_fraction", "initial_features", "seed")


def add_parser(commands: "argparse._SubParsersAction") -> None:
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
    settings_arguments(re)
    semantic_arguments(re)
    re.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch_with_torchrun(args.nproc)
    import json

    from ..semantic.config import TrainingConfig
    from ..semantic.distributed import DistContext
    from ..learning.labelled_images import find_labelled_images
    from ..services import build_model_provider, build_retrainer, build_slice_embedder
    from ..settings import Settings

    settings = Settings.from_conf(semantic_conf(args))
    overrides = {key: getattr(args, key) for key in FLAGS if getattr(args, key) is not None}
    if args.no_warm_start:
        overrides["warm_start"] = False
    config = TrainingConfig.from_mapping(overrides, base=settings.training)
    if not Path(args.studies).is_dir():
        print(f"retrain: {args.studies} is not a datastore folder", file=sys.stderr)
        return 2
    studies = find_labelled_images(Path(args.studies))
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


def relaunch_with_torchrun(nproc: int) -> int:
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
