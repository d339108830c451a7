"""Instance segmentation: speed at MedicoSAM's real shape, and quality on labelled studies.

    python benchmarks/instances.py [--device cpu|cuda] [--points-per-side 16] [--slice-size 512]
    python benchmarks/instances.py --studies DATASTORE --checkpoint vit_b_medicosam.pt --semantic-dir DIR

Speed (always): a ViT-B-shaped SAM with random weights, one cached slice embedding. ``everything`` at the
given grid, per slice: segment-anything's decoder against ours (grid_decoder.py) at a few batch sizes;
one box-prompted slice decode, the unit of the ``semantic`` and ``boxes`` modes; and how many grid points
the background rule skips on real sample slices. Encoding is not included (see click_latency.py):
both modes run on embeddings already cached by the interactive tasks or ``precompute``.

Quality: on a datastore with final labels, per class, instance F1 at IoU 0.5 of ``semantic`` mode against
the label's connected components, and Dice of the raw semantic output and of ``refine`` (semantic + SAM)
against the label, with the time per slice. Without ``--studies`` it builds a small case itself: the MNI
sample (4× downsampled), a tiny SAM with random weights and a semantic decoder trained on three subjects for a
few epochs, evaluated on a fourth. Those figures show the pipeline works end to end, not MedicoSAM's quality.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sample-data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from small_case import small_case  # noqa: E402
from timing import median_seconds  # noqa: E402
from medicosam_app.instances.mask_generator import (  # noqa: E402
    GridSettings,
    PredictorPointDecoder,
    generate,
    grid_points,
    on_flat_background,
)
from medicosam_app.instances.metrics import instance_f1_per_class  # noqa: E402
from medicosam_app.instances.segmenter import InstanceOptions, InstanceSegmenter  # noqa: E402
from medicosam_app.model.provider import ModelProvider  # noqa: E402
from medicosam_app.model.predictor import ImageEmbedding, PromptPredictor  # noqa: E402
from medicosam_app.interactive.propagation_settings import PropagationSettings  # noqa: E402
from medicosam_app.model.random_checkpoint import VIT_B_SAM  # noqa: E402
from medicosam_app.model.sam_builder import build_sam  # noqa: E402
from medicosam_app.semantic.classes import SemanticClasses  # noqa: E402
from medicosam_app.semantic.config import TrainingConfig  # noqa: E402
from medicosam_app.semantic.metrics import dice_per_class  # noqa: E402
from medicosam_app.semantic.retrain import SemanticRetrainer  # noqa: E402
from medicosam_app.semantic.segmenter import SemanticSegmenter  # noqa: E402
from medicosam_app.learning.labelled_images import find_labelled_images  # noqa: E402
from medicosam_app.learning.versions import VersionStore  # noqa: E402
from medicosam_app.embeddings.slice_embedder import SliceEmbedder  # noqa: E402


class SamReferenceDecoder:
    """segment-anything's own mask decoder behind the generator's interface: every prompt's masks computed."""

    def __init__(self, predictor: PromptPredictor, embedding: ImageEmbedding) -> None:
        self.predictor, self.embedding = predictor, embedding

    def predict(self, points_xy):
        logits, iou = self.predictor.decode_points(self.embedding, points_xy)
        return iou, logits

    def logits(self, state, keep):
        return state[keep]

    def upscale(self, logits):
        return self.predictor.upscale(logits[:, None], self.embedding.original_size)[:, 0]


def _sample_slices():
    """The middle axial slice of the CT phantom and of the MNI T1, as the encoder sees them (uint8)."""
    import build_datastore

    from medicosam_app.geometry.coordinates import SliceView
    from medicosam_app.embeddings.intensity import IntensityPolicy, slice_to_rgb
    from medicosam_app.geometry.volume import read_volume

    slices = {}
    with tempfile.TemporaryDirectory() as folder:
        ct = Path(folder) / "ct.nii.gz"
        sitk.WriteImage(build_datastore.make_ct_phantom(), str(ct))
        mr = Path(folder) / "mr.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(build_datastore.nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))), str(mr))
        for name, path in (("CT phantom", ct), ("MNI T1", mr)):
            volume = read_volume(path)
            view = SliceView.create(volume.shape, volume.direction, 2)
            pixels = view.extract(volume.array, view.num_slices // 2)
            slices[name] = slice_to_rgb(pixels, IntensityPolicy().volume_range(volume.array))[:, :, 0]
    return slices


def speed(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    predictor = PromptPredictor(build_sam(VIT_B_SAM), device=device, precision="fp32")
    size = (args.slice_size, args.slice_size)
    embedding = ImageEmbedding(torch.randn(1, 256, 64, 64, device=device), size)
    points = args.points_per_side ** 2
    print(f"\n== everything: {args.points_per_side}×{args.points_per_side} = {points} point prompts on a {size[0]}² slice, "
          "ViT-B decoder (random weights), cached embedding, no pruning ==")
    # Random weights predict low IoUs, so SAM's filter would drop every mask and skip all upscaling: the
    # worst case opens the filters (every prompt's three masks upscaled and scored), the best keeps them.
    every_mask = dict(pred_iou_thresh=-10.0, stability_score_thresh=0.0, min_area=1, skip_background=False, prune_covered=False)
    rows = [("segment-anything decoder, every mask", SamReferenceDecoder, every_mask, args.reference_batch)]
    rows += [(f"grid decoder, every mask (batch {b})", PredictorPointDecoder, every_mask, b) for b in args.batches]
    rows.append(("grid decoder, no mask passes SAM's IoU filter", PredictorPointDecoder,
                 dict(every_mask, pred_iou_thresh=0.88), args.batches[0]))
    for label, decoder_class, options, batch in rows:
        if decoder_class is SamReferenceDecoder and args.skip_reference:
            continue
        grid = GridSettings(points_per_side=args.points_per_side, points_per_batch=batch, **options)
        seconds = median_seconds(lambda: generate(decoder_class(predictor, embedding), size, grid), args.repeats, device)
        print(f"{label:48s} {seconds:7.2f} s per slice  ({1000 * seconds / points:6.1f} ms per prompt)")
    box = np.array([40.0, 60.0, 200.0, 180.0])
    drawn = median_seconds(lambda: predictor.predict(embedding, box_xyxy=box), args.repeats, device)
    print(f"one box-prompted slice (the unit of the semantic and boxes modes): {1000 * drawn:.1f} ms")

    print(f"\n== the default everything request on real sample slices ({args.points_per_side}×{args.points_per_side}, "
          f"SAM's filters, flat-background points skipped at level {GridSettings.background_level}/255) ==")
    print("(random weights pass no mask through the IoU filter, so pruning by found objects cannot show here)")
    for name, display in _sample_slices().items():
        grid_xy = grid_points(display.shape, args.points_per_side)
        radius = max(1, int(min(display.shape) / args.points_per_side / 2))
        flat = int(on_flat_background(grid_xy, display, radius, GridSettings.background_level).sum())
        sample = ImageEmbedding(torch.randn(1, 256, 64, 64, device=device), display.shape)
        grid = GridSettings(points_per_side=args.points_per_side, points_per_batch=args.batches[0])
        seconds = median_seconds(lambda: generate(PredictorPointDecoder(predictor, sample), display.shape, grid, display),
                               args.repeats, device)
        print(f"{name:12s} {display.shape[0]}×{display.shape[1]}: {flat} of {points} points on background "
              f"({100 * flat / points:.0f} %), {seconds:.2f} s per slice")


def quality(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.studies is None:
            studies, checkpoint = small_case(scratch)
            semantic_dir = scratch / "semantic"
            print("\n== quality: small self-made case (MNI sample 4× smaller, tiny random SAM, semantic decoder "
                  "trained 8 epochs on subjects 0-2, evaluated on the held-out subject 3) ==")
        else:
            studies, checkpoint, semantic_dir = Path(args.studies), args.checkpoint, Path(args.semantic_dir)
            print(f"\n== quality: {studies} ==")
        classes = SemanticClasses.parse(args.labels)
        models = ModelProvider(str(checkpoint), allow_download=False, device=args.device)
        embedder = SliceEmbedder(models)
        store = VersionStore(semantic_dir)
        labelled = find_labelled_images(studies)
        evaluated = labelled
        if args.studies is None:
            config = TrainingConfig(epochs=8, learning_rate=1e-3, initial_features=8, max_slices_per_image=16)
            summary = SemanticRetrainer(store, embedder, models, classes).run(labelled[:3], config, force=True, progress=False)
            print(f"semantic decoder: {summary.line()}")
            evaluated = labelled[3:]
        semantic = SemanticSegmenter(store, embedder)
        instances = InstanceSegmenter(models, embedder, semantic)
        drawing = PropagationSettings(iou_threshold=args.iou_threshold, min_predicted_iou=args.min_predicted_iou)
        for study in evaluated:
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(study.label_path))).transpose(2, 1, 0)
            raw = semantic.segment(str(study.image_path))
            started = time.perf_counter()
            result = instances.segment(study.image_path, InstanceOptions(mode="semantic", drawing=drawing))
            instance_seconds = time.perf_counter() - started
            started = time.perf_counter()
            refined = instances.refine_semantic(study.image_path, drawing)
            refine_seconds = time.perf_counter() - started
            slices = truth.shape[2]
            ids = {r["id"]: r["class_value"] for r in result.instances.records}
            f1 = instance_f1_per_class(result.instances.label, ids, truth, classes.names, classes.values)
            true_indices = classes.to_indices(truth)
            raw_dice = dice_per_class(classes.to_indices(raw.label), true_indices, list(classes.names))
            refined_dice = dice_per_class(classes.to_indices(refined.label), true_indices, list(classes.names))
            print(f"{study.image_id}: {len(ids)} instances from {result.details.get('proposed')} proposals; "
                  f"semantic mode {instance_seconds / slices * 1000:.0f} ms per slice, refine {refine_seconds / slices * 1000:.0f} ms "
                  f"per slice ({slices} slices; {refined.redrawn_slices} component slices redrawn, {refined.kept_slices} kept)")
            print(f"  {'class':16s} {'F1@0.5':>7s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'Dice raw':>9s} {'Dice refined':>13s}")
            for name in classes.names:
                match = f1[name]
                print(f"  {name:16s} {match.f1:7.3f} {match.true_positives:4d} {match.false_positives:4d} "
                      f"{match.false_negatives:4d} {raw_dice['per_class'][name]:9.3f} {refined_dice['per_class'][name]:13.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--reference-batch", type=int, default=4, help="segment-anything decoder's batch")
    parser.add_argument("--skip-reference", action="store_true", help="do not time segment-anything's decoder")
    parser.add_argument("--slice-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--studies", help="a datastore folder with labels/final (default: a small self-made case)")
    parser.add_argument("--checkpoint", help="the SAM checkpoint, with --studies")
    parser.add_argument("--semantic-dir", help="the semantic version store (CACHE_DIR/semantic), with --studies")
    parser.add_argument("--labels", default="grey_matter,white_matter", help="the semantic classes")
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--min-predicted-iou", type=float, default=0.5)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    if args.studies is not None and (args.checkpoint is None or args.semantic_dir is None):
        parser.error("--studies needs --checkpoint and --semantic-dir")
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}")
    if not args.skip_speed:
        speed(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
