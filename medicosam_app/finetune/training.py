"""The finetuning loop: simulated interactive sessions on cached embeddings, Dice + IoU-regression loss.

Per object and step: open with a jittered box or a random inside point (even odds), predict, add one
positive click from the misses and one negative from the extras (micro-sam's rule), and repeat for
``sub_iterations`` predictions; each correction sees the previous logits with probability
``mask_prompt_probability``. The loss of each prediction is soft Dice against the truth plus the squared
error of SAM's predicted IoU against the real one; a lone opening point asks for three masks and learns
from the best of them, as SAM was trained. The prompt encoder and mask decoder learn; with ``encoder lora``
or ``full`` the image encoder learns too (see :mod:`.encoder_changes`), run on each step's slices.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from segment_anything.modeling import Sam
from tqdm import tqdm

from ..embeddings.memory_cache import EmbeddingCache
from ..errors import MedicoSamError
from ..evaluation.clicks import RandomErrorClicks
from ..model.encoder_input import encoder_input
from ..model.predictor import decode_prompts, logits_to_image
from ..runtime.memory import gib, resident_bytes
from .config import FinetuneConfig
from .decoder_weights import decoder_state, trainable_parameters
from .encoder_changes import encoder_change, trainable_encoder
from .prompting import jittered_box, random_inside
from .samples import ObjectSample

logger = logging.getLogger(__name__)


@dataclass
class FinetuneOutcome:
    state: Dict[str, torch.Tensor]  # the best epoch's prompt encoder + mask decoder (+ encoder change, if any)
    best_epoch: int
    history: List[Dict[str, Any]] = field(default_factory=list)
    seconds_per_epoch: float = 0.0


def prediction_losses(logits: torch.Tensor, predicted_iou: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per mask: soft Dice loss + (predicted IoU − real IoU)². ``logits`` (M, H, W), ``predicted_iou`` (M,)."""
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * truth).flatten(1).sum(1)
    dice = (2 * overlap + 1e-6) / (probabilities.flatten(1).sum(1) + truth.sum() + 1e-6)
    with torch.no_grad():
        binary = logits > 0
        real_iou = (binary & (truth > 0)).flatten(1).sum(1) / ((binary | (truth > 0)).flatten(1).sum(1)).clamp(min=1)
    return (1 - dice) + (predicted_iou - real_iou.float()) ** 2


def session_predictions(
    sam: Sam, dense_pe: torch.Tensor, features: torch.Tensor, sample: ObjectSample, config: FinetuneConfig,
    rng: np.random.Generator,
) -> Iterator[torch.Tensor]:
    """The loss of each prediction of one simulated session on one object, yielded as it is made: a caller may
    run ``backward`` on each before the next (the next prompts depend only on detached values), so one
    prediction's graph is alive at a time instead of the whole batch's."""
    truth_np = sample.mask
    truth = torch.from_numpy(truth_np.astype(np.float32)).to(features.device)
    rule = RandomErrorClicks()
    box = jittered_box(truth_np, config.box_jitter, rng) if rng.random() < 0.5 else None
    clicks = [] if box is not None else [random_inside(truth_np, rng)]
    previous = None
    for iteration in range(config.sub_iterations):
        xy = np.array([(c.x, c.y) for c in clicks], dtype=float).reshape(-1, 2)
        labels = np.array([int(c.positive) for c in clicks], dtype=int)
        low, iou = decode_prompts(
            sam, features, dense_pe, sample.original_size, xy, labels, box, previous,
            multimask=iteration == 0 and box is None,
        )
        logits = logits_to_image(low[0], sam.image_encoder.img_size, sample.original_size)
        losses = prediction_losses(logits, iou[0], truth)
        best = int(torch.argmin(losses.detach()))
        prediction = (logits[best] > 0).detach().cpu().numpy()
        previous_low = low[0, best : best + 1].detach()
        del low, iou, logits
        yield losses[best]
        if iteration + 1 < config.sub_iterations:
            clicks = clicks + rule(truth_np, prediction, rng)
            previous = previous_low if rng.random() < config.mask_prompt_probability else None


def session_loss(
    sam: Sam, dense_pe: torch.Tensor, features: torch.Tensor, sample: ObjectSample, config: FinetuneConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The mean loss of one simulated session on one object (all its predictions' graphs kept)."""
    return sum(session_predictions(sam, dense_pe, features, sample, config, rng), features.new_zeros(())) / config.sub_iterations


def step_streamed(
    sam: Sam, dense_pe: torch.Tensor, batch: Sequence[ObjectSample], embeddings: EmbeddingCache,
    config: FinetuneConfig, device: torch.device, rng: np.random.Generator,
) -> float:
    """Gradients of one batch's mean loss, accumulated one prediction at a time (a frozen encoder: the
    predictions share no graph), so memory holds one prediction's activations whatever the batch size and
    the number of sub-iterations. The same gradient as one ``backward`` of the batch's mean; returns the loss."""
    scale = 1.0 / (len(batch) * config.sub_iterations)
    total = 0.0
    for sample in batch:
        features = _features(embeddings, sample, device)
        for loss in session_predictions(sam, dense_pe, features, sample, config, rng):
            (loss * scale).backward()
            total += float(loss.detach()) * scale
    return total


def batch_features(
    sam: Sam, batch: Sequence[ObjectSample], embeddings: EmbeddingCache, device: torch.device, encoder_trains: bool
) -> List[torch.Tensor]:
    """Encoder features of each object's slice: the cached embedding, or with a training encoder the encoder
    run now on the slice (once per slice of the batch, with gradients unless called under ``no_grad``)."""
    if not encoder_trains:
        return [_features(embeddings, sample, device) for sample in batch]
    computed: Dict[Any, torch.Tensor] = {}
    for sample in batch:
        if sample.key not in computed:
            if sample.image is None:
                raise ValueError("an encoder that trains needs the slices' images (prepare_objects(keep_images=True))")
            computed[sample.key] = sam.image_encoder(encoder_input(sam, [sample.image], device))
    return [computed[sample.key] for sample in batch]


def _features(embeddings: EmbeddingCache, sample: ObjectSample, device: torch.device) -> torch.Tensor:
    def missing():
        raise MedicoSamError(
            f"Features of {sample.image_id} slice {sample.slice_index} vanished from the embedding cache during "
            "finetuning; raise embedding_disk_mb so the training set fits."
        )

    embedding, _ = embeddings.get_or_encode(sample.key, missing)
    return embedding.features.to(device).clone()  # a normal tensor: cached ones may come from inference mode


def mean_loss(
    sam: Sam, dense_pe: torch.Tensor, samples: Sequence[ObjectSample], embeddings: EmbeddingCache,
    config: FinetuneConfig, device: torch.device, seed: int,
) -> float:
    """The loss over ``samples`` without learning, with prompts drawn from ``seed`` (the same every epoch)."""
    if not samples:
        return math.nan
    rng = np.random.default_rng(seed)
    encoder_trains = config.encoder != "frozen"
    # One slice's features at a time: a slice's objects come one after the other (prepare_objects), so a
    # training encoder still runs once per slice, and memory does not grow with the validation set.
    key, features = None, None
    losses = []
    with torch.no_grad():
        for sample in samples:
            if sample.key != key:
                key, features = sample.key, batch_features(sam, [sample], embeddings, device, encoder_trains)[0]
            losses.append(float(session_loss(sam, dense_pe, features, sample, config, rng)))
    return float(np.mean(losses))


def finetune(
    sam: Sam,
    train: Sequence[ObjectSample],
    val: Sequence[ObjectSample],
    embeddings: EmbeddingCache,
    config: FinetuneConfig,
    device: torch.device,
    progress: bool = True,
    encoder_start: Optional[Dict[str, torch.Tensor]] = None,
) -> FinetuneOutcome:
    """Train ``sam``'s prompt encoder and mask decoder in place (and with ``config.encoder`` lora/full a copy
    of its image encoder, starting from ``encoder_start``'s change); return the weights of the epoch with
    the lowest validation loss (the last epoch without validation objects).

    ``encoder_start``: the encoder change of the version training starts from (empty: the checkpoint's
    encoder). A frozen encoder keeps it as it is, and the new version carries it on."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder_start = dict(encoder_start or {})
    encoder_trains = config.encoder != "frozen"
    parameters = trainable_parameters(sam)
    groups: List[Dict[str, Any]] = [{"params": parameters, "lr": config.learning_rate}]
    encoder = None
    if encoder_trains:
        encoder, encoder_parameters = trainable_encoder(sam.image_encoder, config.encoder, config.lora_rank, encoder_start)
        sam.image_encoder = encoder
        groups.append({"params": encoder_parameters, "lr": config.encoder_learning_rate})
        parameters = parameters + encoder_parameters
        logger.info("Finetuning the image encoder too (%s, %d trainable weights)", config.encoder,
                    sum(p.numel() for p in encoder_parameters))
    sam.to(device)
    optimiser = torch.optim.AdamW(groups)

    def current_state() -> Dict[str, torch.Tensor]:
        change = encoder_change(encoder, config.encoder) if encoder is not None else encoder_start
        return {**decoder_state(sam), **change}

    with torch.no_grad():
        dense_pe = sam.prompt_encoder.get_dense_pe()
    untrained = mean_loss(sam, dense_pe, val, embeddings, config, device, config.seed + 1)
    # Epoch 0 is the start exactly (its encoder change as it was: a full copy of an unchanged encoder would
    # otherwise look like a new encoder and cost every embedding).
    best_loss, best_epoch, best_state = untrained, 0, {**decoder_state(sam), **encoder_start}
    history: List[Dict[str, Any]] = [{"epoch": 0, "val_loss": round(untrained, 5)}]
    epoch_seconds = []
    bar = tqdm(range(1, config.epochs + 1), desc="Finetuning the interactive decoder", unit="epoch", disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        sam.train()
        order = rng.permutation(len(train))
        losses = []
        for first in range(0, len(order), config.batch_size):
            batch = [train[i] for i in order[first : first + config.batch_size]]
            optimiser.zero_grad(set_to_none=True)
            if encoder_trains:  # the batch's objects share their slices' encoder graph: one backward
                features = batch_features(sam, batch, embeddings, device, encoder_trains)
                loss = sum(session_loss(sam, dense_pe, f, s, config, rng) for f, s in zip(features, batch)) / len(batch)
                loss.backward()
                losses.append(float(loss.detach()))
            else:
                losses.append(step_streamed(sam, dense_pe, batch, embeddings, config, device, rng))
            optimiser.step()
        sam.eval()
        epoch_seconds.append(time.perf_counter() - started)
        val_loss = mean_loss(sam, dense_pe, val, embeddings, config, device, config.seed + 1)
        train_loss = float(np.mean(losses)) if losses else math.nan
        history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "val_loss": round(val_loss, 5),
                        "seconds": round(epoch_seconds[-1], 2)})
        if not val or val_loss <= best_loss:  # "<=": the later epoch on ties
            best_loss, best_epoch, best_state = val_loss, epoch, current_state()
        memory = gib(resident_bytes())
        bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", memory=memory)
        logger.info("finetune epoch %d/%d: train loss %.4f, validation loss %.4f (%.1f s, resident memory %s)",
                    epoch, config.epochs, train_loss, val_loss, epoch_seconds[-1], memory)
    for parameter in parameters:
        parameter.requires_grad_(False)
    return FinetuneOutcome(best_state, best_epoch, history, float(np.mean(epoch_seconds)) if epoch_seconds else 0.0)
