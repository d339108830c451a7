"""Active learning adapters: the uncertainty strategy and the Dice scoring method."""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Dict, Optional

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.tasks.activelearning.random import Random

from medicosam_app.semantic.active_learning import UncertaintyRanker, score_against_label
from medicosam_app.errors import MedicoSamError
from medicosam_app.request_values import parse_text
from medicosam_app.semantic.segmenter import NoSemanticModelError, SemanticSegmenter

from .semantic_train import FINAL, labelled_studies

logger = logging.getLogger(__name__)


class RandomStrategy(Random):
    """MONAI Label's random pick, weighted by how long ago each image was last handed out, without its crash:
    an image handed out this very second weighs 0, and when every candidate was (two annotators asking at once,
    or one image left) ``random.choices`` raised and the request answered 500. Each weight is now at least 1."""

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy = request["strategy"]
        now = int(time.time())
        weights = [max(1, now - int(datastore.get_image_info(image).get("strategy", {}).get(strategy, {}).get("ts", 0)))
                   for image in images]
        index = random.choices(range(len(images)), weights=weights)[0]
        logger.info("Random: selected image %s (weight %d of %d images)", images[index], weights[index], len(images))
        return {"id": images[index], "weight": weights[index]}


class UncertaintyStrategy(Strategy):
    """The unlabelled image the semantic decoder is least sure about (mean voxel entropy on a few slices)."""

    def __init__(self, ranker: UncertaintyRanker, max_candidates: int = 20) -> None:
        super().__init__("Unlabelled image with the highest semantic-model uncertainty (mean voxel entropy)")
        self.ranker = ranker
        self.max_candidates = max_candidates

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Optional[Dict[str, Any]]:
        images = datastore.get_unlabeled_images(parse_text(request.get("label_tag"), "label_tag", default=FINAL))
        if not images:
            return None
        candidates = images if len(images) <= self.max_candidates else random.sample(images, self.max_candidates)
        try:
            ranked = self.ranker.rank([datastore.get_image_uri(i) for i in candidates])
        except NoSemanticModelError:
            choice = random.choice(images)
            logger.info("Uncertainty: no semantic model yet, picked %s at random", choice)
            return {"id": choice, "strategy_note": "no semantic model yet: random choice"}
        by_path = {datastore.get_image_uri(i): i for i in candidates}
        best = ranked[0]
        return {"id": by_path[best.image], "entropy": round(best.entropy, 5), "model_version": best.version,
                "candidates": len(candidates)}


class DiceScoring(ScoringMethod):
    """Records, per labelled image, the Dice between the served model's prediction and the final label."""

    def __init__(self, segmenter: SemanticSegmenter, max_slices: int = 64) -> None:
        super().__init__("Dice of the served semantic model against each final label")
        self.segmenter = segmenter
        self.max_slices = max_slices

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        scores: Dict[str, Any] = {}
        for study in labelled_studies(datastore):
            try:
                score = score_against_label(self.segmenter, str(study.image_path), str(study.label_path), self.max_slices)
            except NoSemanticModelError as error:
                return {"error": str(error)}
            except (MedicoSamError, ValueError) as error:
                logger.warning("Dice scoring skipped %s: %s", study.image_id, error)
                continue
            datastore.update_image_info(study.image_id, {"medicosam_dice": score})
            scores[study.image_id] = score
        return scores
