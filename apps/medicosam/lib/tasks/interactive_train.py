"""``POST /train/medicosam_interactive``: one interactive finetuning round over the datastore's final labels.

MONAI Label runs it in a separate process; the server's interactive tasks pick up a promoted version at
their next request (see ``medicosam_app.finetune.serving``).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from medicosam_app.finetune.config import FinetuneConfig
from medicosam_app.finetune.rounds import InteractiveFinetuner

from ..http.http_errors import as_http_errors
from .semantic_train import TrainingRound, labelled_studies

logger = logging.getLogger(__name__)


class InteractiveTrain(TrainTask):
    def __init__(self, finetuner: InteractiveFinetuner, defaults: FinetuneConfig) -> None:
        super().__init__(
            "Finetune the interactive prompt encoder and mask decoder on accepted labels with simulated clicks; "
            "serve it if it needs no more clicks on held-out images"
        )
        self.finetuner = finetuner
        self.defaults = defaults

    def config(self) -> Dict[str, Any]:
        return dict(self.defaults.to_dict(), min_new_labels=1, force=False)

    def stats(self) -> Dict[str, Any]:
        store = self.finetuner.store
        versions = []
        for meta in store.list():
            gate = meta.get("metrics", {}).get("gate", {})
            versions.append(
                {k: meta.get(k) for k in ("version", "created", "parent", "promoted", "promotion", "serving")}
                | {"gate_candidate": gate.get("candidate"), "gate_serving": gate.get("serving")}
            )
        return {"serving": store.serving(), "versions": versions}

    def check_request(self, request: Mapping[str, Any]) -> TrainingRound:
        return TrainingRound.from_request(request, self.defaults, distributed=False)

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        with as_http_errors():
            training = self.check_request(request)
            summary = self.finetuner.run(
                labelled_studies(datastore), training.config, min_new_labels=training.min_new_labels, force=training.force,
            )
        logger.info(summary.line())
        return summary.to_dict()
