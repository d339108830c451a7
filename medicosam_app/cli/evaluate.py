"""``python -m medicosam_app evaluate``: the simulated-annotator evaluation from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import MedicoSamError
from .common import semantic_arguments, semantic_conf, settings_arguments


def add_parser(commands: "argparse._SubParsersAction") -> None:
    ev = commands.add_parser(
        "evaluate",
        help="simulate annotators on the final labels: Dice per click, NoC@85/90, 3D propagation Dice",
        description="Every connected component of every class of the final labels (20 pixels or more) is prompted "
        "with a box and with a point, then corrected click by click as the chosen protocol says. Prints a table; "
        "--json and --csv keep every object's trace. Embeddings come from the shared cache.",
    )
    add_arguments(ev)
    settings_arguments(ev)
    semantic_arguments(ev)
    ev.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", required=True,
                        help="datastore folder (images and labels/final/), or a DICOMweb URL: every series with a "
                        "DICOM SEG, the newest SEG as its label")
    parser.add_argument("--protocol", choices=["medicosam", "cvpr25"], default="medicosam",
                        help="correction rule: medicosam (micro-sam's: a random point in the false negatives and one in "
                        "the false positives per round) or cvpr25 (one click at the centre of the largest error)")
    parser.add_argument("--start", choices=["box", "point"], action="append",
                        help="opening prompt (repeatable; default both)")
    parser.add_argument("--iterations", type=int, default=8, help="predictions reported per 2D object (default 8: "
                        "the opening prompt and 7 corrections)")
    parser.add_argument("--max-clicks", type=int, default=20, help="NoC cap (default 20)")
    parser.add_argument("--mask-prompt", action="store_true",
                        help="give the model its previous logits with each correction, as the server does for Slicer")
    parser.add_argument("--max-slices-per-image", type=int, default=16,
                        help="2D objects come from this many foreground slices per image, evenly spread (0: all)")
    parser.add_argument("--slice-axis", type=int, choices=[0, 1, 2], default=2, help="array axis to slice along")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3D propagation evaluation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the medicosam protocol's random clicks")
    parser.add_argument("--compare", metavar="CKPT", help="evaluate this checkpoint too and report the difference")
    parser.add_argument("--json", metavar="FILE", help="write every object's trace and the summary as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one row per object as CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..dicom.labelled_series import local_studies
    from ..evaluation.report import result_document, table, write_csv
    from ..evaluation.runner import EvaluationSettings, Evaluator
    from ..learning.labelled_images import find_labelled_images
    from ..services import build_model_provider, build_slice_embedder
    from ..settings import Settings

    settings = Settings.from_conf(semantic_conf(args))
    studies_dir = local_studies(args.studies, settings.dicom_cache_dir, progress=not args.quiet)
    if not studies_dir.is_dir():
        print(f"evaluate: {args.studies} is not a datastore folder (images, and labels/final/)", file=sys.stderr)
        return 2
    try:
        evaluation = EvaluationSettings(
            protocol=args.protocol, starts=tuple(dict.fromkeys(args.start or ["box", "point"])), iterations=args.iterations,
            max_clicks=args.max_clicks, mask_prompt=args.mask_prompt, axis=args.slice_axis,
            max_slices_per_image=args.max_slices_per_image, volumetric=not args.no_3d, seed=args.seed,
        )
    except MedicoSamError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    studies = find_labelled_images(studies_dir)
    if not studies:
        print(f"evaluate: no image in {studies_dir} has a final label (labels/final/<id>.nii.gz); nothing to evaluate.",
              file=sys.stderr)
        return 2
    classes = settings.classes.label_names()

    def evaluate(settings_for_model: Settings, role: str):
        models = build_model_provider(settings_for_model)
        models.predictor()  # a missing checkpoint is reported before any work
        embedder = build_slice_embedder(settings_for_model, models, memory_mb=256)
        model = {"role": role, **{k: models.status.get(k) for k in ("checkpoint", "xxh128", "precision", "device")}}
        return Evaluator(embedder, model=model).run(studies, classes, evaluation, progress=not args.quiet)

    served = evaluate(settings, "served")
    results = {"served": served}
    if args.compare:
        if not Path(args.compare).is_file():
            print(f"evaluate: --compare {args.compare} is not a file", file=sys.stderr)
            return 2
        results["compare"] = evaluate(dataclasses.replace(settings, checkpoint=str(args.compare)), "compare")
        if results["compare"].model.get("xxh128") == served.model.get("xxh128"):
            print("evaluate: note: --compare names the same weights as the served checkpoint", file=sys.stderr)
    print(table(served, results.get("compare")))
    for image, reason in served.skipped:
        print(f"skipped {image}: {reason}", file=sys.stderr)
    if args.json:
        from ..atomic_files import write_json_atomic

        document = result_document(served)
        if "compare" in results:
            document["compare"] = result_document(results["compare"])
        write_json_atomic(args.json, document)
    if args.csv:
        write_csv(args.csv, results)
    return 0
