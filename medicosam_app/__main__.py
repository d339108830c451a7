"""``python -m medicosam_app <command>``: work for cron jobs and administrators, without the server."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Dict, List, Optional

from .errors import MedicoSamError


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (default: the MEDICOSAM_* environment, as the server reads it)")
    group.add_argument("--checkpoint", help="MedicoSAM checkpoint file")
    group.add_argument("--cache-dir", help="weights and embedding cache folder (default ~/.cache/medicosam)")
    group.add_argument("--embedding-disk-dir", help="embedding cache folder (default <cache-dir>/embeddings)")
    group.add_argument("--intensity", choices=["volume", "slice", "percentile", "window"])
    group.add_argument("--window-level", type=float)
    group.add_argument("--window-width", type=float)
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    group.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    group.add_argument("--no-download", action="store_true", help="never download the published weights")


def _conf(args: argparse.Namespace) -> Dict[str, str]:
    keys = ["checkpoint", "cache_dir", "embedding_disk_dir", "intensity", "window_level", "window_width", "precision", "device"]
    conf = {key: str(getattr(args, key)) for key in keys if getattr(args, key) is not None}
    if args.no_download:
        conf["download"] = "false"
    return conf


def run_precompute(args: argparse.Namespace) -> int:
    from .precompute import find_images, precompute
    from .services import build_model_provider, build_slice_embedder
    from .settings import Settings

    settings = Settings.from_conf(_conf(args))
    if settings.embedding_disk_dir is None:
        print("precompute needs the disk embedding cache; it is switched off (embedding_disk_dir).", file=sys.stderr)
        return 2
    images = find_images(args.studies)
    if not images:
        print(f"No images (*.nii.gz, *.nii, *.nrrd, *.mha) in {args.studies}; nothing to do.")
        return 0
    models = build_model_provider(settings)
    models.predictor()  # load now: a missing checkpoint is reported before any work
    embedder = build_slice_embedder(settings, models, memory_mb=0)  # straight to disk, keep no RAM
    summary = precompute(images, embedder, axes=args.axis, batch_size=args.batch_size, progress=not args.quiet)
    print(f"precompute: {summary.line()} → {settings.embedding_disk_dir}")
    return 1 if summary.failed and summary.images == 0 else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medicosam_app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    pre = commands.add_parser("precompute", help="encode every slice of a datastore into the disk embedding cache")
    pre.add_argument("--studies", required=True, help="datastore folder (or one image file)")
    pre.add_argument("--axis", type=int, choices=[0, 1, 2], action="append",
                     help="array axis to slice along (repeatable; default 2, the server's default)")
    pre.add_argument("--batch-size", type=int, default=1, help="slices per encoder pass (GPUs gain from 4-8)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    _settings_arguments(pre)
    pre.set_defaults(run=run_precompute)
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
