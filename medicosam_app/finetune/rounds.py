"""One finetuning round: accepted labels the interactive model has not learned from → simulated sessions
→ a new version → the evaluation gate → served or kept aside.

The server's trainer (``POST /train/medicosam_interactive``), its label-count trigger and schedule, and
``python -m medicosam_app finetune`` all call :meth:`InteractiveFinetuner.run`.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Sequence

import torch

from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import InvalidRequestError
from ..model.provider import ModelProvider
from ..learning.rounds import RoundSummary, decide_round, split_images
from ..learning.labelled_images import LabelledImage
from ..learning.versions import TrainingBusyError, VersionStore
from .config import FinetuneConfig
from .decoder_weights import load_decoder_state, predictor_with_decoder, sam_with_own_decoder
from .encoder_changes import changes_encoder, continues, encoder_tag
from ..runtime.memory import gib, peak_resident_bytes
from .gate import GateVerdict, gate_settings, run_gate
from .samples import prepare_objects
from .training import finetune

logger = logging.getLogger(__name__)


class FinetuneSummary(RoundSummary):
    """A round's outcome, as the semantic retraining reports it."""

    def line(self) -> str:
        if self.status != "trained":
            return f"finetune: {self.status}: {self.reason}"
        verdict = "promoted" if self.promoted else "kept, not promoted"
        peak = self.metrics.get("peak_rss_bytes") if self.metrics else None
        memory = f"; peak memory {gib(peak)}" if peak else ""
        return f"finetune: {self.version} from {self.new_labels} new labels, {verdict} ({self.reason}){memory}"


class InteractiveFinetuner:
    """Finetunes the prompt encoder and mask decoder from labelled studies into a :class:`VersionStore`."""

    def __init__(
        self, store: VersionStore, embedder: SliceEmbedder, models: ModelProvider, classes: Dict[str, int],
        device: Optional[str] = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.models = models
        self.classes = dict(classes)
        self.device = device

    def new_labels(self, studies: Sequence[LabelledImage]) -> List[LabelledImage]:
        """Labels no version has learned from yet (new images, or labels saved again with changes)."""
        return self.store.new_labels(studies)

    def run(
        self,
        studies: Sequence[LabelledImage],
        config: FinetuneConfig = FinetuneConfig(),
        min_new_labels: int = 1,
        force: bool = False,
        progress: bool = True,
    ) -> FinetuneSummary:
        try:
            lock = self.store.acquire_training_lock()
        except TrainingBusyError as error:
            return FinetuneSummary("busy", reason=str(error))
        try:
            decision = decide_round(self.store, studies, min_new_labels, force, FinetuneSummary)
            if decision.status != "go":
                return decision  # type: ignore[return-value]
            return self._train(studies, config, decision.new_labels, progress)
        finally:
            lock.release()

    def _train(self, studies: Sequence[LabelledImage], config: FinetuneConfig, new_labels: int, progress: bool) -> FinetuneSummary:
        started = time.time()
        base = self.models.base_predictor()
        device = torch.device(self.device) if self.device else base.device
        encoder_trains = config.encoder != "frozen"
        if encoder_trains and device.type == "cpu":
            logger.warning("Finetuning the image encoder (%s) on a CPU runs the encoder forward and backward for "
                           "every slice of every step: expect hours for ViT-B; a GPU is the place for it.", config.encoder)
        serving = self.store.serving()
        serving_state = self._loadable(serving)
        start_state = serving_state if config.warm_start and serving_state is not None else None
        if start_state is not None and not continues(start_state, config.encoder, config.lora_rank):
            # Its decoder learned on an encoder this round cannot start from (LoRA on a fully finetuned
            # encoder, or LoRA of another rank): start from the checkpoint, decoder and encoder alike.
            logger.warning("Interactive version %s changed the encoder in a way a %s round (rank %d) cannot continue; "
                           "starting from the checkpoint", serving, config.encoder, config.lora_rank)
            start_state = None
        init = serving if start_state is not None else "checkpoint"
        # Training reads the features of the encoder it starts from: the checkpoint's, or the serving
        # version's when that one finetuned the encoder too.
        start_predictor = predictor_with_decoder(base, start_state) if start_state is not None else base
        embedder = self.embedder.using(start_predictor)
        train_studies, val_studies = split_images(studies, config.val_fraction)
        train, skipped = prepare_objects(
            train_studies, self.classes, embedder, config.axis, config.max_slices_per_image,
            config.max_objects_per_slice, progress, keep_images=encoder_trains,
        )
        val, val_skipped = prepare_objects(
            val_studies, self.classes, embedder, config.axis, config.gate_slices_per_image,
            config.max_objects_per_slice, progress, keep_images=encoder_trains,
        )
        skipped += val_skipped
        if not train:
            raise InvalidRequestError(
                "No object to finetune on in the training images"
                + (": " + "; ".join(f"{i}: {r}" for i, r in skipped) if skipped else " (no labelled component of 20 pixels or more)."),
                422,
            )

        sam = sam_with_own_decoder(base.sam)
        if start_state is not None:
            load_decoder_state(sam, start_state)
        encoder_start = {k: v for k, v in (start_state or {}).items() if changes_encoder({k: v})}
        outcome = finetune(sam, train, val, embedder.embeddings, config, device, progress, encoder_start)
        candidate_tag = encoder_tag(outcome.state)

        if outcome.best_epoch == 0 and init == serving and serving is not None and config.epochs > 0:
            # No epoch beat the serving decoder it started from: the "candidate" is that decoder again.
            verdict = GateVerdict(False, f"no epoch improved the validation loss of {serving}, which it started from", {}, None)
        else:
            if serving_state is None:
                serving_predictor = base
            elif start_state is serving_state:
                serving_predictor = start_predictor
            else:
                serving_predictor = predictor_with_decoder(base, serving_state)
            verdict = run_gate(
                predictor_with_decoder(base, outcome.state), serving_predictor, serving or "the checkpoint's decoder",
                self.embedder, val_studies, self.classes, gate_settings(config.gate_slices_per_image, config.axis, config.seed),
            )
        skipped_ids = {image_id for image_id, _ in skipped}
        metrics = {
            "gate": verdict.to_dict(),
            "best_epoch": outcome.best_epoch,
            "history": outcome.history,
            "seconds_per_epoch": round(outcome.seconds_per_epoch, 2),
            "train_objects": len(train),
            "val_objects": len(val),
            "peak_rss_bytes": peak_resident_bytes(),  # the process's, since it started
        }
        metadata = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "parent": serving,
            "init": init,
            "encoder_checkpoint": self.models.checkpoint_hash,
            "encoder_key": self.models.encoder_key_of(base.embedding_kind, candidate_tag),  # its embeddings' key
            "encoder": config.encoder,  # what this round trained of the encoder
            "encoder_tag": candidate_tag,  # None: the checkpoint's encoder, unchanged
            "preprocessing": self.embedder.intensity.key,
            "labels": self.classes,
            "train_images": sorted({s.image_id for s in train}),
            "val_images": sorted(s.image_id for s in val_studies if s.image_id not in skipped_ids),
            "data": [{"image_id": s.image_id, "label_hash": s.label_hash} for s in studies if s.image_id not in skipped_ids],
            "skipped": [{"image_id": i, "reason": r} for i, r in skipped],
            "metrics": metrics,
            "config": config.to_dict(),
            "device": str(device),
            "promoted": verdict.promote,
            "promotion": verdict.reason,
        }
        version = self.store.add(outcome.state, metadata)
        if verdict.promote:
            self.store.promote(version, verdict.reason)
        logger.info("Interactive decoder %s: %s", version, verdict.reason)
        return FinetuneSummary("trained", new_labels, version, verdict.promote, verdict.reason, metrics)

    def _loadable(self, version: Optional[str]) -> Optional[Dict[str, torch.Tensor]]:
        """A version's weights when it was trained on the loaded checkpoint's encoder, else None."""
        if version is None:
            return None
        if self.store.metadata(version).get("encoder_checkpoint") != self.models.checkpoint_hash:
            logger.warning("Interactive version %s was trained for another checkpoint; starting from the checkpoint", version)
            return None
        return self.store.load_state(version)
