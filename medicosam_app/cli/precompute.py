"""``python -m medicosam_app precompute``: encode every slice of a datastore into the disk embedding cache."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from .common import settings_arguments, settings_conf


def add_parser(commands: "argparse._SubParsersAction") -> None:
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
    settings_arguments(pre)
    pre.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..embeddings.precompute import Shard, find_images, precompute
    from ..services import build_model_provider, build_slice_embedder
    from ..settings import Settings

    if args.axis is None:  # not argparse's default: an appended --axis would add to it
        args.axis = [2]
    settings = Settings.from_conf(settings_conf(args))
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


def torch_cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
