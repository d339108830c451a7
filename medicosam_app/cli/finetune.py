"""``python -m medicosam_app finetune``: one interactive finetuning round from a datastore folder."""

from __future__ import annotations

import argparse
import json
import sys

from .common import semantic_arguments, semantic_conf, settings_arguments

FLAGS = ("epochs", "learning_rate", "batch_size", "sub_iterations", "max_slices_per_image", "gate_slices_per_image",
         "val_fraction", "seed", "encoder", "lora_rank", "encoder_learning_rate")


def add_parser(commands: "argparse._SubParsersAction") -> None:
    fin = commands.add_parser(
        "finetune",
        help="finetune the interactive decoder on final labels with simulated clicks (for cron / systemd timers)",
        description="Train the prompt encoder and mask decoder on cached embeddings with simulated prompts, from "
        "the final labels, if at least --min-new-labels of them are new since the last version; store the result as "
        "a version and serve it only if, on held-out images, it needs no more clicks to reach 90%% Dice and ends no "
        "worse than the serving decoder. Exits 0 with a one-line summary, also when there is nothing to do.",
    )
    add_arguments(fin)
    settings_arguments(fin)
    semantic_arguments(fin)
    fin.add_argument("--interactive-dir", help="versions of the interactive decoder (default <cache-dir>/interactive)")
    fin.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", required=True,
                        help="datastore folder (images, and labels/final/), or a DICOMweb URL (series with a DICOM SEG)")
    parser.add_argument("--min-new-labels", type=int, default=1, help="train only if this many labels are new (default 1)")
    parser.add_argument("--force", action="store_true", help="train even without new labels")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--batch-size", type=int, help="objects per optimiser step")
    parser.add_argument("--sub-iterations", type=int, help="predictions per simulated session (default 8)")
    parser.add_argument("--max-slices-per-image", type=int)
    parser.add_argument("--gate-slices-per-image", type=int, help="foreground slices per held-out image the gate evaluates")
    parser.add_argument("--val-fraction", type=float, help="share of images held out for the gate")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--encoder", choices=["frozen", "lora", "full"],
                        help="the image encoder: frozen (default: cached embeddings, fine on a CPU), or lora / full "
                             "finetuning (a GPU's job; the new encoder's embeddings are cached under a key of their own)")
    parser.add_argument("--lora-rank", type=int, help="rank of the LoRA factors on each attention block's qkv (default 4)")
    parser.add_argument("--encoder-learning-rate", type=float, help="learning rate of the encoder's weights (default 1e-5)")
    parser.add_argument("--no-warm-start", action="store_true", help="start from the checkpoint's decoder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..dicom.labelled_series import local_studies
    from ..finetune.config import FinetuneConfig  # imports torch: not for --help
    from ..learning.labelled_images import find_labelled_images
    from ..services import build_finetuner, build_model_provider, build_slice_embedder
    from ..settings import Settings

    settings = Settings.from_conf(semantic_conf(args))
    overrides = {key: getattr(args, key) for key in FLAGS if getattr(args, key) is not None}
    if args.no_warm_start:
        overrides["warm_start"] = False
    config = FinetuneConfig.from_mapping(overrides, base=settings.finetune)
    studies = local_studies(args.studies, settings.dicom_cache_dir, progress=not args.quiet)
    if not studies.is_dir():
        print(f"finetune: {args.studies} is not a datastore folder", file=sys.stderr)
        return 2
    models = build_model_provider(settings)
    embedder = build_slice_embedder(settings, models, memory_mb=256)
    summary = build_finetuner(settings, models, embedder).run(
        find_labelled_images(studies), config, min_new_labels=args.min_new_labels, force=args.force,
        progress=not args.quiet,
    )
    print(json.dumps(summary.to_dict()) if args.json else summary.line())
    return 0
