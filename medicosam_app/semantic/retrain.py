"""One retraining round: find accepted labels the current model has not learned from, train, store a
new version, and promote it only if it validates at least as well as the serving one on the same images.

The server's trainer, its schedule, and ``python -m medicosam_app retrain`` (cron, systemd) all call
:meth:`SemanticRetrainer.run`; a round with nothing new to learn returns at once, so calling it often
is harmless.
"""

from __future__ import annotations

import logging
import time
from typing import List, Optional, Sequence, Tuple


from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import InvalidRequestError
from ..model.provider import ModelProvider
from .classes import SemanticClasses
from .config import TrainingConfig
from .distributed import DistContext
from .initial_weights import initial_decoder
from .network import DecoderShape, UNETRDecoder
from .slices import SliceSample, prepare_samples
from ..learning.labelled_images import LabelledImage
from .training import evaluate, train_decoder
from ..learning.rounds import RoundSummary, decide_round, split_images
from ..learning.versions import TrainingBusyError, VersionStore, trained_on_checkpoint

logger = logging.getLogger(__name__)


class RetrainSummary(RoundSummary):
    """A semantic round's outcome, with its validation Dice in the line."""

    def line(self) -> str:
        if self.status != "trained":
            return f"retrain: {self.status}: {self.reason}"
        dice = self.metrics.get("val_dice")
        verdict = "promoted" if self.promoted else "kept, not promoted"
        return f"retrain: {self.version} from {self.new_labels} new labels, validation Dice {dice:.4f}, {verdict} ({self.reason})"


def hold_out_slices(samples: Sequence[SliceSample], every: int = 5) -> Tuple[List[SliceSample], List[SliceSample]]:
    """Every ``every``-th slice for validation: the fallback when only one image is labelled (neighbouring
    slices are alike, so this validation is optimistic; it still catches a run that learned nothing)."""
    val = [s for i, s in enumerate(samples) if i % every == every // 2]
    return [s for s in samples if s not in val], val


class SemanticRetrainer:
    """Retrains the semantic decoder from labelled studies into a :class:`VersionStore`."""

    def __init__(
        self,
        store: VersionStore,
        embedder: SliceEmbedder,
        models: ModelProvider,
        classes: SemanticClasses,
        device: Optional[str] = None,
        released_decoder: Optional[str] = None,
        cache_dir: Optional[str] = None,
    ) -> None:
        self.store = store
        self.embedder = embedder.using_checkpoint_encoder()  # the semantic decoder reads the checkpoint's encoder
        self.models = models
        self.classes = classes
        self.device = device
        self.released_decoder = released_decoder
        self.cache_dir = cache_dir

    def new_labels(self, studies: Sequence[LabelledImage]) -> List[LabelledImage]:
        """Labels no version has learned from yet (new images, or labels saved again with changes)."""
        return self.store.new_labels(studies)

    def run(
        self,
        studies: Sequence[LabelledImage],
        config: TrainingConfig = TrainingConfig(),
        min_new_labels: int = 1,
        force: bool = False,
        progress: bool = True,
    ) -> RetrainSummary:
        dist = DistContext.from_env()
        lock = None
        try:
            decision = None
            if dist.is_main:
                try:
                    lock = self.store.acquire_training_lock()
                except TrainingBusyError as error:
                    decision = RetrainSummary("busy", reason=str(error))
                if decision is None:
                    decision = decide_round(self.store, studies, min_new_labels, force, RetrainSummary)
            decision = dist.broadcast(decision)
            if decision.status != "go":
                return decision
            return self._train(studies, config, decision.new_labels, dist, progress)
        finally:
            if lock is not None:
                lock.release()

    def _train(
        self, studies: Sequence[LabelledImage], config: TrainingConfig, new_labels: int, dist: DistContext, progress: bool
    ) -> RetrainSummary:
        started = time.time()
        device = dist.device(self.device)
        train_studies, val_studies = split_images(studies, config.val_fraction)
        samples, skipped = prepare_samples(
            train_studies + val_studies, self.classes, self.embedder, config.axis, config.max_slices_per_image,
            encode_share=(dist.rank, dist.world), progress=progress and dist.is_main,
        )
        dist.barrier()  # every process's share of the features is on disk now
        val_ids = {s.image_id for s in val_studies}
        train_samples = [s for s in samples if s.image_id not in val_ids]
        val_samples = [s for s in samples if s.image_id in val_ids]
        if not val_samples and config.val_fraction > 0:
            train_samples, val_samples = hold_out_slices(train_samples)
        if not train_samples:
            raise InvalidRequestError("No usable training slices: " + "; ".join(f"{i}: {r}" for i, r in skipped), 422)

        serving = self.store.serving()
        shape = self._shape(config)
        decoder, init = self._initial(shape, serving, config)
        outcome = train_decoder(
            decoder, train_samples, val_samples, self.embedder, self.classes.names, config, device, dist, progress
        )
        if not dist.is_main:
            return RetrainSummary("trained", new_labels=new_labels, reason="worker process")

        serving_validation = None
        if serving is not None and val_samples:
            current = self.load_version(serving, device)
            if current is not None:
                serving_validation = evaluate(current, val_samples, self.embedder, self.classes.names, device)
        candidate = outcome.validation["mean"]
        if not val_samples:
            promote, reason = False, "no validation slices (val_fraction 0 or too few labels): never promoted unvalidated"
        elif serving_validation is None:
            promote, reason = True, "first version" if serving is None else f"serving {serving} has other classes"
        elif candidate >= serving_validation["mean"]:
            promote, reason = True, f"validation Dice {candidate:.4f} ≥ {serving_validation['mean']:.4f} of {serving}"
        else:
            promote, reason = False, f"validation Dice {candidate:.4f} < {serving_validation['mean']:.4f} of {serving}"
        metrics = {
            "val_dice": candidate,
            "val_dice_per_class": outcome.validation["per_class"],
            "untrained_val_dice": outcome.untrained_validation.get("mean"),
            "serving_val_dice": None if serving_validation is None else serving_validation["mean"],
            "best_epoch": outcome.best_epoch,
            "history": outcome.history,
            "train_slices": len(train_samples),
            "val_slices": len(val_samples),
        }
        skipped_ids = {image_id for image_id, _ in skipped}
        metadata = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "parent": serving,
            "init": init,
            "encoder_checkpoint": self.models.checkpoint_hash,
            "encoder_key": self.models.checkpoint_encoder_key,
            "preprocessing": self.embedder.intensity.key,
            "decoder_shape": shape.to_dict(),
            "labels": self.classes.label_names(),
            "train_images": sorted({s.image_id for s in train_samples}),
            "val_images": sorted({s.image_id for s in val_samples}),
            "data": [{"image_id": s.image_id, "label_hash": s.label_hash} for s in studies if s.image_id not in skipped_ids],
            "skipped": [{"image_id": i, "reason": r} for i, r in skipped],
            "metrics": metrics,
            "config": config.to_dict(),
            "world_size": dist.world,
            "promoted": promote,
            "promotion": reason,
        }
        version = self.store.add(outcome.state, metadata)
        if promote:
            self.store.promote(version, reason)
        logger.info("Semantic decoder %s: %s", version, reason)
        return RetrainSummary("trained", new_labels, version, promote, reason, {"val_dice": candidate, **metrics})

    def _shape(self, config: TrainingConfig) -> DecoderShape:
        sam = self.models.base_predictor().sam
        return DecoderShape(
            num_classes=self.classes.num_classes,
            embed_dim=int(sam.image_encoder.neck[0].out_channels),
            initial_features=config.initial_features,
            image_size=int(sam.image_encoder.img_size),
        )

    def _initial(self, shape: DecoderShape, serving: Optional[str], config: TrainingConfig) -> Tuple[UNETRDecoder, str]:
        if config.warm_start and serving is not None:
            meta = self.store.metadata(serving)
            if DecoderShape.from_dict(meta["decoder_shape"]) == shape and meta.get("labels") == self.classes.label_names():
                decoder = UNETRDecoder(shape)
                decoder.load_state_dict(self.store.load_state(serving))
                return decoder, serving
        return initial_decoder(UNETRDecoder(shape), self.released_decoder, self.cache_dir, allow_download=False)

    def load_version(self, version: str, device) -> Optional[UNETRDecoder]:
        """A stored version's decoder, or None when it was trained for other classes or another encoder."""
        meta = self.store.metadata(version)
        self.models.base_predictor()  # loaded before its hash is asked
        if meta.get("labels") != self.classes.label_names() or not trained_on_checkpoint(meta, self.models.checkpoint_hash):
            return None
        decoder = UNETRDecoder(DecoderShape.from_dict(meta["decoder_shape"]))
        decoder.load_state_dict(self.store.load_state(version))
        return decoder.to(device).eval()
