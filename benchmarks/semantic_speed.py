"""Speed of the semantic decoder at the published shape (256-channel neck, 64 initial features, 1024²):
inference per slice and training step per slice, on cached encoder features (random here); the light
path (``semantic_downscale`` 2 and 4) and a narrower decoder; and, on a small labelled case it builds
itself (MNI sample, tiny SAM, decoder trained for a few epochs), the Dice of each light path against the
full path and against the truth.

    python benchmarks/semantic_speed.py [--device cpu|cuda] [--batch 4] [--repeats 3] [--skip-quality]

Encoding is not included: it is the interactive tasks' cost per slice (see click_latency.py), paid once
per slice and cached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_seconds  # noqa: E402

from medicosam_app.semantic.network import DecoderShape, UNETRDecoder, logits_to_slice  # noqa: E402
from medicosam_app.semantic.training import semantic_loss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--downscales", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-training", action="store_true", help="only the inference rows (training a step is slow on a CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    decoder = UNETRDecoder(DecoderShape(num_classes=args.classes)).to(device)
    features = torch.randn(args.batch, 256, 64, 64, device=device)
    size = (233, 197)  # an MNI axial slice at 1 mm
    target = torch.randint(0, args.classes, (1, 1, *size), device=device)
    loss_fn, optimiser = semantic_loss(), torch.optim.AdamW(decoder.parameters(), lr=1e-4)

    @torch.inference_mode()
    def infer():
        decoder.eval()
        logits_to_slice(decoder(features), (1024, 866), size).argmax(1)

    def train_step():
        decoder.train()
        logits = decoder(features)
        loss = sum(loss_fn(logits_to_slice(logits[i : i + 1], (1024, 866), size), target) for i in range(args.batch))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    if not args.skip_training:
        infer_s = median_seconds(infer, args.repeats, device)
        train_s = median_seconds(train_step, args.repeats, device)
        params = sum(p.numel() for p in decoder.parameters())
        print(f"semantic decoder ({params / 1e6:.1f} M parameters) on {device}, batch {args.batch}:")
        print(f"  inference    {1000 * infer_s / args.batch:8.1f} ms/slice  ({args.batch / infer_s:.2f} slices/s)")
        print(f"  training     {1000 * train_s / args.batch:8.1f} ms/slice  ({args.batch / train_s:.2f} slices/s)")
        print(f"  e.g. a 189-slice MNI volume: {189 * infer_s / args.batch:.1f} s of decoding once its embeddings are "
              f"cached; an epoch over 10 images x 64 slices: {640 * train_s / args.batch / 60:.1f} min", flush=True)

    print("light path and narrower decoders, inference only (ms per slice, argmax at the slice size included):")
    for width in args.widths:
        narrow = UNETRDecoder(DecoderShape(num_classes=args.classes, initial_features=width)).to(device).eval()
        for downscale in args.downscales:
            @torch.inference_mode()
            def light(net=narrow, scale=downscale):
                logits = net(features, scale)
                framed = tuple(-(-n // scale) for n in (1024, 866))
                logits_to_slice(logits, framed, size).argmax(1)

            seconds = median_seconds(light, args.repeats, device)
            print(f"  initial_features {width:3d}, semantic_downscale {downscale}: {1000 * seconds / args.batch:8.1f} ms/slice",
                  flush=True)
    if not args.skip_quality:
        quality(args)


def quality(args) -> None:
    """Dice of the light paths against the full path and the truth, with one small trained decoder."""
    import tempfile

    from small_case import small_case

    from medicosam_app.model.provider import ModelProvider
    from medicosam_app.semantic.classes import SemanticClasses
    from medicosam_app.semantic.config import TrainingConfig
    from medicosam_app.semantic.metrics import dice_per_class
    from medicosam_app.semantic.retrain import SemanticRetrainer
    from medicosam_app.semantic.segmenter import SemanticSegmenter
    from medicosam_app.learning.labelled_images import find_labelled_images
    from medicosam_app.learning.versions import VersionStore
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.geometry.volume import read_volume

    with tempfile.TemporaryDirectory() as scratch:
        studies, checkpoint = small_case(Path(scratch))
        classes = SemanticClasses.parse("grey_matter,white_matter")
        models = ModelProvider(str(checkpoint), allow_download=False, precision="fp32")
        embedder = SliceEmbedder(models)
        store = VersionStore(Path(scratch) / "semantic")
        labelled = find_labelled_images(studies)
        config = TrainingConfig(epochs=8, learning_rate=1e-3, initial_features=8, max_slices_per_image=16)
        summary = SemanticRetrainer(store, embedder, models, classes).run(labelled[:3], config, force=True, progress=False)
        held_out = labelled[3]
        truth = read_volume(held_out.label_path).array
        names = list(classes.names)
        print(f"\nDice on the held-out {held_out.image_id} (tiny SAM, decoder trained 8 epochs on three subjects; "
              f"{summary.line()}):")
        full = None
        for downscale in (1, 2, 4):
            label = SemanticSegmenter(store, embedder, downscale=downscale).segment(str(held_out.image_path)).label
            full = label if full is None else full
            against_full = dice_per_class(label, full, names)["mean"]
            against_truth = dice_per_class(label, truth, names)
            per_class = ", ".join(f"{k} {v:.3f}" for k, v in against_truth["per_class"].items())
            print(f"  semantic_downscale {downscale}: Dice vs full path {against_full:.3f}; vs truth {against_truth['mean']:.3f} ({per_class})")

if __name__ == "__main__":
    main()
