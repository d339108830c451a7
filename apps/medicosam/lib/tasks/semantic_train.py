"""``POST /train/medicosam_semantic``: one retraining round over the datastore's final labels.

MONAI Label runs it in a separate process; a new version is served only once it has passed the
validation gate (see ``medicosam_app.semantic.retrain``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping

import torch
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from medicosam_app.request_values import parse_bool, parse_int
from medicosam_app.semantic.config import TrainingConfig
from medicosam_app.semantic.retrain import SemanticRetrainer
from medicosam_app.learning.labelled_images import LabelledImage

from ..http.http_errors import as_http_errors

logger = logging.getLogger(__name__)

FINAL = "final"


def labelled_studies(datastore: Datastore) -> List[LabelledImage]:
    """The datastore's images with a final label, as the core's study list."""
    studies = []
    for image_id in datastore.get_labeled_images(FINAL):
        image, label = datastore.get_image_uri(image_id), datastore.get_label_uri(image_id, FINAL)
        if image and label:
            studies.append(LabelledImage(image_id, Path(image), Path(label)))
    return studies


def max_processes() -> int:
    """One training process per GPU; on a machine without one, per CPU core (gloo)."""
    return torch.cuda.device_count() or os.cpu_count() or 1


@dataclass(frozen=True)
class TrainingRound:
    """What one ``POST /train/<model>`` asks for, checked: the options of the trainer's config type
    (:class:`TrainingConfig` for the semantic decoder, ``FinetuneConfig`` for the interactive one)."""

    config: Any
    nproc: int  # processes (one per GPU); more than one runs under torchrun
    min_new_labels: int
    force: bool

    @classmethod
    def from_request(cls, request: Mapping[str, Any], defaults: Any, distributed: bool = True) -> "TrainingRound":
        """Every option of the request over ``defaults``; a malformed one is a 422 that names it.
        Without ``distributed`` the round runs in one process and ``nproc`` may only be 1."""
        options = dict(request)
        config_type = type(defaults)
        for field in dataclasses.fields(config_type):
            if field.type in ("bool", bool) and options.get(field.name) is not None:
                # TrainingConfig reads any unknown word as false; here it must be a real true/false.
                options[field.name] = parse_bool(options[field.name], field.name)
        return cls(
            config=config_type.from_mapping(options, base=defaults),
            nproc=parse_int(options.get("nproc"), "nproc", minimum=1, maximum=max_processes() if distributed else 1,
                            default=(torch.cuda.device_count() or 1) if distributed else 1),
            min_new_labels=parse_int(options.get("min_new_labels"), "min_new_labels", minimum=0, default=1),
            force=parse_bool(options.get("force"), "force", default=False),
        )


class SemanticTrain(TrainTask):
    """Runs in-process, or under torchrun with one process per GPU (``nproc``, default: the GPU count)."""

    def __init__(self, retrainer: SemanticRetrainer, defaults: TrainingConfig, conf: Dict[str, str], studies: str) -> None:
        super().__init__("Retrain the semantic decoder on accepted labels; promote it if it validates better")
        self.retrainer = retrainer
        self.defaults = defaults
        self.conf = conf
        self.studies = studies  # the local datastore folder, for the distributed command

    def config(self) -> Dict[str, Any]:
        return dict(self.defaults.to_dict(), min_new_labels=1, force=False)

    def stats(self) -> Dict[str, Any]:
        store = self.retrainer.store
        versions = store.list()
        return {
            "serving": store.serving(),
            "versions": [
                {k: v.get(k) for k in ("version", "created", "parent", "promoted", "promotion", "serving")}
                | {"val_dice": v.get("metrics", {}).get("val_dice")}
                for v in versions
            ],
        }

    def check_request(self, request: Mapping[str, Any]) -> TrainingRound:
        """The checked round; the server calls it before starting the background training process, whose
        errors the client would never see."""
        return TrainingRound.from_request(request, self.defaults)

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        with as_http_errors():
            training = self.check_request(request)
        if training.nproc > 1 and isinstance(datastore, LocalDatastore):
            return self._run_distributed(training)
        with as_http_errors():
            summary = self.retrainer.run(
                labelled_studies(datastore),
                training.config,
                min_new_labels=training.min_new_labels,
                force=training.force,
            )
        logger.info(summary.line())
        return summary.to_dict()

    def _run_distributed(self, training: TrainingRound) -> Dict[str, Any]:
        """The same round through ``python -m medicosam_app retrain --nproc N`` (torchrun, DDP)."""
        config = training.config
        # The command reads the server's settings from the environment, as MEDICOSAM_<KEY>.
        env = dict(os.environ, **{f"MEDICOSAM_{k.upper()}": str(v) for k, v in self.conf.items() if v not in (None, "")})
        env.update({f"MEDICOSAM_TRAIN_{k.upper()}": str(v) for k, v in config.to_dict().items()})
        command = [sys.executable, "-m", "medicosam_app", "retrain", "--studies", self.studies,
                   "--nproc", str(training.nproc), "--json", "--min-new-labels", str(training.min_new_labels)]
        if training.force:
            command.append("--force")
        if not config.warm_start:
            command.append("--no-warm-start")
        logger.info("Distributed training on %d processes: %s", training.nproc, " ".join(command))
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        sys.stderr.write(done.stderr[-20000:])
        summaries = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not summaries:
            raise RuntimeError(f"distributed training failed ({done.returncode}): {done.stderr[-2000:]}")
        return json.loads(summaries[-1])
