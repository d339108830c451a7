"""The training loop of the semantic decoder on cached encoder features: 0.5·Dice + 0.5·cross-entropy,
validation Dice per class after every epoch, the best epoch kept. Runs as one process or under DDP."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..embeddings.slice_embedder import SliceEmbedder
from .config import TrainingConfig
from .distributed import DistContext
from .metrics import DiceAccumulator
from .network import UNETRDecoder, logits_to_slice
from .slices import SliceFeatures, SliceSample, collate, input_size

logger = logging.getLogger(__name__)


@dataclass
class TrainingOutcome:
    state: Dict[str, torch.Tensor]
    best_epoch: int
    validation: Dict[str, Any]  # Dice summary of the kept weights
    untrained_validation: Dict[str, Any]
    history: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def semantic_loss() -> torch.nn.Module:
    """0.5·Dice + 0.5·cross-entropy on softmax outputs against class-index targets."""
    from monai.losses import DiceCELoss  # monai is a heavy import; only training needs it
    return DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.5, lambda_ce=0.5)


@torch.no_grad()
def evaluate(
    decoder: UNETRDecoder,
    samples: Sequence[SliceSample],
    embedder: SliceEmbedder,
    class_names: Sequence[str],
    device: torch.device,
    batch_size: int = 4,
) -> Dict[str, Any]:
    """Per-class Dice of ``decoder`` on ``samples`` (per image over its slices, then the mean over images)."""
    accumulator = DiceAccumulator(class_names)
    if not samples:
        return accumulator.summary()
    was_training = decoder.training
    decoder.eval()
    loader = DataLoader(SliceFeatures(samples, embedder), batch_size=batch_size, shuffle=False, collate_fn=collate)
    for features, targets, positions in loader:
        logits = decoder(features.to(device))
        for i, (target, position) in enumerate(zip(targets, positions)):
            size = tuple(target.shape)
            out = logits_to_slice(logits[i : i + 1], input_size(size, decoder.shape.image_size), size)
            prediction = out[0].argmax(0).cpu().numpy().astype(np.uint8)
            accumulator.add(samples[position].image_id, prediction, target.numpy())
    decoder.train(was_training)
    return accumulator.summary()


def train_decoder(
    decoder: UNETRDecoder,
    train_samples: Sequence[SliceSample],
    val_samples: Sequence[SliceSample],
    embedder: SliceEmbedder,
    class_names: Sequence[str],
    config: TrainingConfig,
    device: torch.device,
    dist: DistContext = DistContext(),
    progress: bool = True,
) -> TrainingOutcome:
    """Train ``decoder`` (in place) and return the weights of its best validation epoch."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    decoder.to(device)
    model: torch.nn.Module = decoder
    if dist.active:
        model = DistributedDataParallel(decoder, device_ids=[device.index] if device.type == "cuda" else None)
    dataset = SliceFeatures(train_samples, embedder)
    sampler = DistributedSampler(dataset, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate)
    loss_fn = semantic_loss()
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=config.learning_rate)

    def validate() -> Dict[str, Any]:
        return evaluate(decoder, val_samples, embedder, class_names, device) if dist.is_main else {}

    untrained = validate()
    best = copy.deepcopy(untrained)
    best_state = {k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()}
    best_epoch = 0
    history: List[Dict[str, Any]] = []
    epochs = tqdm(range(1, config.epochs + 1), desc="Training semantic decoder", unit="epoch", disable=not (progress and dist.is_main))
    for epoch in epochs:
        sampler.set_epoch(epoch)
        model.train()
        losses = []
        for features, targets, _ in loader:
            logits = model(features.to(device))
            loss = 0.0
            for i, target in enumerate(targets):
                size = tuple(target.shape)
                out = logits_to_slice(logits[i : i + 1], input_size(size, decoder.shape.image_size), size)
                loss = loss + loss_fn(out, target.to(device)[None, None])
            loss = loss / len(targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        train_loss = float(np.mean(losses)) if losses else math.nan
        validation = validate()
        record = {"epoch": epoch, "train_loss": round(train_loss, 5)}
        if dist.is_main:
            record["val_dice"] = round(validation["mean"], 5)
            record["val_dice_per_class"] = validation["per_class"]
            # ">=" keeps the later epoch on ties; without validation slices the last epoch is kept.
            if not val_samples or validation["mean"] >= best["mean"]:
                best, best_epoch = validation, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()}
            epochs.set_postfix(loss=f"{train_loss:.4f}", val_dice=f"{validation['mean']:.3f}")
            logger.info("epoch %d/%d: train loss %.4f, validation Dice %.4f %s", epoch, config.epochs, train_loss,
                        validation["mean"], validation["per_class"])
        history.append(record)
    return TrainingOutcome(
        state=best_state,
        best_epoch=best_epoch,
        validation=best,
        untrained_validation=untrained,
        history=history,
        seconds=round(time.perf_counter() - started, 2),
    )
