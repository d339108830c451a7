"""MedicoSAM Label: the MONAI Label app. Adapters only; the model code lives in ``medicosam_app``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Dict

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # the core package sits beside apps/ in this repository
    sys.path.insert(0, str(_REPO))

from fastapi import HTTPException  # noqa: E402
from monailabel.config import settings  # noqa: E402
from monailabel.datastore.dicom import DICOMwebClientX  # noqa: E402
from dicomweb_client.session_utils import create_session_from_user_pass  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402

from monailabel.tasks.activelearning.first import First  # noqa: E402
from monailabel.tasks.activelearning.random import Random  # noqa: E402
from monailabel.utils.async_tasks.task import AsyncTask  # noqa: E402

from lib.active_learning import DiceScoring, UncertaintyStrategy  # noqa: E402
from lib.datastore import CheckedLocalDatastore  # noqa: E402
from lib.dicomweb_datastore import MedicoSAMDicomWebDatastore, search_filters  # noqa: E402
from lib.interactive_infer import InteractiveInfer  # noqa: E402
from lib.propagation_infer import PropagationInfer  # noqa: E402
from lib.ohif_route import serve_ohif  # noqa: E402
from lib.responsive_server import serve_heavy_endpoints_in_threads  # noqa: E402
from lib.semantic_infer import SemanticInfer  # noqa: E402
from lib.semantic_train import SemanticTrain, labelled_studies  # noqa: E402
from medicosam_app import __version__  # noqa: E402
from medicosam_app.dicom.seg import SegmentationAuthor  # noqa: E402
from medicosam_app.interactive import InteractiveSegmenter  # noqa: E402
from medicosam_app.prefetch import Prefetcher  # noqa: E402
from medicosam_app.active_learning import UncertaintyRanker  # noqa: E402
from medicosam_app.semantic.schedule import build_scheduler, run_in_background  # noqa: E402
from medicosam_app.services import (  # noqa: E402
    build_model_provider,
    build_retrainer,
    build_semantic_segmenter,
    build_slice_embedder,
)
from medicosam_app.settings import Settings  # noqa: E402
from medicosam_app.volume_cache import VolumeCache  # noqa: E402
from medicosam_app.volume_segmenter import VolumeSegmenter  # noqa: E402

logger = logging.getLogger(__name__)

SEMANTIC = "medicosam_semantic"


class MedicoSAMApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]) -> None:
        self.settings = Settings.from_conf(conf or {})
        self.models = build_model_provider(self.settings)
        prefetcher = Prefetcher(
            batch_size=self.settings.encode_batch_size, quiet_seconds=self.settings.prefetch_quiet_ms / 1000
        )
        volumes = VolumeCache(self.settings.volume_cache_mb << 20)
        embedder = build_slice_embedder(self.settings, self.models, prefetcher)
        self.segmenter = InteractiveSegmenter(self.models, volumes=volumes, embedder=embedder)
        self.volume_segmenter = VolumeSegmenter(self.models, embedder, volumes)
        self.semantic = build_semantic_segmenter(self.settings, embedder, volumes)
        self.retrainer = build_retrainer(self.settings, self.models, embedder)
        self._schedule_stop = None
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="MedicoSAM Label",
            description="Interactive MedicoSAM segmentation of CT and MRI",
            version=__version__,
        )

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            if settings.MONAI_LABEL_DATASTORE.lower() not in ("", "dicomweb"):
                return super().init_datastore()  # XNAT, DSA: MONAI Label's own
            return self._dicomweb_datastore()
        return CheckedLocalDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def _dicomweb_datastore(self) -> Datastore:
        """A PACS over DICOMweb, with DICOM SEG written by highdicom (MONAI Label would download dcmqi here)."""
        self.studies = self.studies.rstrip("/")
        logger.info("Using DICOMweb: %s (modalities %s)", self.studies, ",".join(self.settings.dicom_modalities))
        session = None
        if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
            session = create_session_from_user_pass(
                settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
            )
        client = DICOMwebClientX(
            url=self.studies,
            session=session,
            qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
        )
        cache = settings.MONAI_LABEL_DICOMWEB_CACHE_PATH.strip() or str(self.settings.dicom_cache_dir)
        return MedicoSAMDicomWebDatastore(
            client, search_filters(self.settings.dicom_modalities), self.segmentation_author, cache_path=cache
        )

    def segmentation_author(self) -> SegmentationAuthor:
        """What a DICOM SEG says made it: the MedicoSAM checkpoint (name and hash) and the serving decoder."""
        status = self.models.status
        if status.get("available"):
            version = f"{status['checkpoint']} xxh128:{status['xxh128'][:16]}"
        else:
            version = "MedicoSAM checkpoint not loaded"
        serving = self.semantic.store.serving()
        if serving:
            version += f"; semantic decoder {serving}"
        return SegmentationAuthor(
            algorithm="MedicoSAM", model_version=version, software_version=f"MedicoSAM Label {__version__}"
        )

    def init_infers(self) -> Dict[str, Any]:
        return {
            "medicosam_interactive": InteractiveInfer(self.segmenter),
            "medicosam_3d": PropagationInfer(self.volume_segmenter),
            SEMANTIC: SemanticInfer(self.semantic, self.settings.classes),
        }

    def init_trainers(self) -> Dict[str, Any]:
        return {SEMANTIC: SemanticTrain(self.retrainer, self.settings.training, dict(self.conf or {}), self.studies)}

    def init_strategies(self) -> Dict[str, Any]:
        return {
            "medicosam_uncertainty": UncertaintyStrategy(UncertaintyRanker(self.semantic)),
            "random": Random(),
            "first": First(),
        }

    def init_scoring_methods(self) -> Dict[str, Any]:
        return {"medicosam_dice": DiceScoring(self.semantic, self.settings.training.max_slices_per_image)}

    def on_init_complete(self) -> None:
        # MONAI Label would run every scoring method at start-up and after each sample request; our
        # Dice scoring runs after each training round instead (see train()).
        self._auto_update_scoring = False
        super().on_init_complete()
        serve_heavy_endpoints_in_threads()
        from monailabel.app import app as fastapi_app  # built by the server before the app is initialised

        serve_ohif(fastapi_app)
        self.models.start_loading()
        scheduler = build_scheduler(self.settings.retrain_schedule, lambda: self._retrain_if_new_labels("schedule", 1))
        if scheduler is not None:
            self._schedule_stop = run_in_background(scheduler)
            logger.info("Semantic retraining scheduled: %s", self.settings.retrain_schedule)

    def on_save_label(self, image_id: str, label_id: str) -> Dict[str, Any]:
        result = super().on_save_label(image_id, label_id) or {}
        every = self.settings.retrain_after_labels
        if every > 0:
            started = self._retrain_if_new_labels(f"{every} new labels", every)
            if started:
                result["retraining"] = started
        return result

    def _retrain_if_new_labels(self, why: str, needed: int) -> str:
        """Queue a training round when at least ``needed`` final labels are new and none is running."""
        try:
            new = len(self.retrainer.new_labels(labelled_studies(self.datastore())))
        except Exception:  # a trigger must never fail the label save that called it
            logger.exception("Could not count new labels")
            return ""
        if new < needed:
            return ""
        running, _ = AsyncTask.status("train", check_if_running=True)
        if running:
            return ""
        self.async_training(SEMANTIC, params={SEMANTIC: {"min_new_labels": needed}}, enqueue=True)
        logger.info("Semantic retraining started (%s): %d new labels", why, new)
        return f"started: {new} new labels"

    def train(self, request):
        result = super().train(request)
        if isinstance(result, dict) and result.get("promoted"):
            scores = self.scoring({"method": "medicosam_dice"})
            logger.info("Dice of %s on labelled images: %s", result.get("version"),
                        {k: v.get("mean") for k, v in scores.items() if isinstance(v, dict)})
        return result

    def infer(self, request, datastore=None):
        """Serve only images the datastore lists: a request never names a file path of its own."""
        image_id = request.get("image")
        store = datastore or self.datastore()
        if isinstance(image_id, str) and not request.get("session"):
            if not store.get_image_uri(image_id):
                raise HTTPException(404, f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.")
            request = dict(request, image_id=image_id)
        return super().infer(request, datastore)
