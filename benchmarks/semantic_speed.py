"""Speed of the semantic decoder at the published shape (256-channel neck, 64 initial features, 1024²):
inference per slice and training step per slice, on cached encoder features (random here).

    python benchmarks/semantic_speed.py [--device cpu|cuda] [--batch 4] [--repeats 3]

Encoding is not included: it is the interactive tasks' cost per slice (see click_latency.py), paid once
per slice and cached.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from medicosam_app.semantic.network import DecoderShape, UNETRDecoder, logits_to_slice
from medicosam_app.semantic.training import semantic_loss


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", type=int, default=3)
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

    infer_s = _time(infer, args.repeats, device)
    train_s = _time(train_step, args.repeats, device)
    params = sum(p.numel() for p in decoder.parameters())
    print(f"semantic decoder ({params / 1e6:.1f} M parameters) on {device}, batch {args.batch}:")
    print(f"  inference    {1000 * infer_s / args.batch:8.1f} ms/slice  ({args.batch / infer_s:.2f} slices/s)")
    print(f"  training     {1000 * train_s / args.batch:8.1f} ms/slice  ({args.batch / train_s:.2f} slices/s)")
    print(f"  e.g. a 189-slice MNI volume: {189 * infer_s / args.batch:.1f} s of decoding once its embeddings are cached;"
          f" an epoch over 10 images x 64 slices: {640 * train_s / args.batch / 60:.1f} min")


if __name__ == "__main__":
    main()
