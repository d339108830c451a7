"""``POST /train/medicosam_semantic``: one retraining round over the datastore's final labels.

MONAI Label runs it in a separate process; a new version is served only once it has passed the
validation gate (see ``medicosam_app.semantic.retrain``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from medicosam_app.semantic.config import TrainingConfig
from medicosam_app.semantic.retrain import SemanticRetrainer
from medicosam_app.semantic.studies import LabelledStudy

from .http_errors import as_http_errors

logger = logging.getLogger(__name__)

FINAL = "final"


def labelled_studies(datastore: Datastore) -> List[LabelledStudy]:
    """The datastore's images with a final label, as the core's study list."""
    studies = []
    for image_id in datastore.get_labeled_images(FINAL):
        image, label = datastore.get_image_uri(image_id), datastore.get_label_uri(image_id, FINAL)
        if image and label:
            studies.append(LabelledStudy(image_id, Path(image), Path(label)))
    return studies


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

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        nproc = int(request.get("nproc") or torch.cuda.device_count() or 1)
        if nproc > 1 and isinstance(datastore, LocalDatastore):
            return self._run_distributed(request, nproc)
        with as_http_errors():
            config = TrainingConfig.from_mapping(request, base=self.defaults)
            summary = self.retrainer.run(
                labelled_studies(datastore),
                config,
                min_new_labels=int(request.get("min_new_labels", 1)),
                force=str(request.get("force", "false")).lower() in ("1", "true", "yes"),
            )
        logger.info(summary.line())
        return summary.to_dict()

    def _run_distributed(self, request: Dict[str, Any], nproc: int) -> Dict[str, Any]:
        """The same round through ``python -m medicosam_app retrain --nproc N`` (torchrun, DDP)."""
        config = TrainingConfig.from_mapping(request, base=self.defaults)
        # The command reads the server's settings from the environment, as MEDICOSAM_<KEY>.
        env = dict(os.environ, **{f"MEDICOSAM_{k.upper()}": str(v) for k, v in self.conf.items() if v not in (None, "")})
        env.update({f"MEDICOSAM_TRAIN_{k.upper()}": str(v) for k, v in config.to_dict().items()})
        command = [sys.executable, "-m", "medicosam_app", "retrain", "--studies", self.studies,
                   "--nproc", str(nproc), "--json", "--min-new-labels", str(int(request.get("min_new_labels", 1)))]
        if str(request.get("force", "false")).lower() in ("1", "true", "yes"):
            command.append("--force")
        if not config.warm_start:
            command.append("--no-warm-start")
        logger.info("Distributed training on %d processes: %s", nproc, " ".join(command))
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        sys.stderr.write(done.stderr[-20000:])
        summaries = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not summaries:
            raise RuntimeError(f"distributed training failed ({done.returncode}): {done.stderr[-2000:]}")
        return json.loads(summaries[-1])
