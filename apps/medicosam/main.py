"""MedicoSAM Label: the MONAI Label app. Adapters only; the model code lives in ``medicosam_app``."""

from __future__ import annotations

import logging
import os
import time
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # the core package sits beside apps/ in this repository
    sys.path.insert(0, str(_REPO))

from monailabel.config import settings  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferType  # noqa: E402

from monailabel.tasks.activelearning.first import First  # noqa: E402
from monailabel.utils.async_tasks.task import AsyncTask  # noqa: E402

from lib.tasks.active_learning import DiceScoring, RandomStrategy, UncertaintyStrategy  # noqa: E402
from lib.datastore import folder_datastore, pacs_datastore, segmentation_author  # noqa: E402
from lib.tasks.instances_infer import InstancesInfer  # noqa: E402
from lib.tasks.interactive_infer import InteractiveInfer  # noqa: E402
from lib.tasks.interactive_train import InteractiveTrain  # noqa: E402
from lib.tasks.propagation_infer import PropagationInfer  # noqa: E402
from lib.http.disconnects import carry_cancellation  # noqa: E402
from lib.service_endpoints import serve_service_endpoints  # noqa: E402
from lib.viewer.ohif_route import serve_ohif  # noqa: E402
from lib.viewer.viewer_capabilities import capabilities  # noqa: E402
from lib.viewer.viewer_config import viewer_app_config  # noqa: E402
from lib.viewer.viewer_route import serve_viewer  # noqa: E402
from lib.access.lock_down import lock_down  # noqa: E402
from lib.tasks.training_audit import audit_training  # noqa: E402
from lib.access.request_context import current_user  # noqa: E402
from lib.http.log_limits import limit_log_records  # noqa: E402
from lib.guards import batch_devices, guard_requests, require_batch_model  # noqa: E402
from lib.http.responsive_server import serve_heavy_endpoints_in_threads  # noqa: E402
from lib.tasks.semantic_infer import SemanticInfer  # noqa: E402
from lib.http.shutdown import PromptShutdown  # noqa: E402
from lib.tasks.semantic_train import SemanticTrain, labelled_studies  # noqa: E402
from medicosam_app import __version__  # noqa: E402
from medicosam_app.api import InferenceFields  # noqa: E402
from medicosam_app.dicom.seg import SegmentationAuthor  # noqa: E402
from medicosam_app.errors import InvalidRequestError  # noqa: E402
from medicosam_app.security.audit import AuditLog  # noqa: E402
from medicosam_app.request_values import optional_text  # noqa: E402
from medicosam_app.instances.segmenter import InstanceSegmenter  # noqa: E402
from medicosam_app.interactive.slice_segmenter import InteractiveSegmenter  # noqa: E402
from medicosam_app.embeddings.prefetch import Prefetcher  # noqa: E402
from medicosam_app.semantic.active_learning import UncertaintyRanker  # noqa: E402
from medicosam_app.semantic.schedule import build_scheduler, run_in_background  # noqa: E402
from medicosam_app.services import (  # noqa: E402
    build_finetuner,
    build_model_provider,
    build_retrainer,
    build_semantic_segmenter,
    build_slice_embedder,
)
from medicosam_app.runtime.heap import glibc_tunables, heap_tuning_state  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402
from medicosam_app.geometry.volume_cache import VolumeCache  # noqa: E402
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter  # noqa: E402

logger = logging.getLogger(__name__)

SEMANTIC = "medicosam_semantic"
INTERACTIVE = "medicosam_interactive"
DEFAULT_STRATEGY = "random"  # what MONAI Label picks when a next-sample request names none


class MedicoSAMApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]) -> None:
        limit_log_records()  # on the handlers MONAI Label's logging configuration made (logs/app.log, console)
        self.settings = Settings.from_conf(conf or {})
        self.session_max_bytes = self.settings.session_max_mb << 20
        self.models = build_model_provider(self.settings)
        heap = heap_tuning_state()
        if heap["applied"] and not heap.get("all_threads"):
            logger.warning(
                "Request threads keep malloc arenas of their own, so each encoder pass maps fresh pages: start the "
                "server with scripts/start_server.sh, or export GLIBC_TUNABLES=%s before it starts", glibc_tunables(environ={}),
            )
        prefetcher = Prefetcher(
            batch_size=self.settings.encode_batch_size, quiet_seconds=self.settings.prefetch_quiet_ms / 1000
        )
        volumes = VolumeCache(self.settings.volume_cache_mb << 20)
        embedder = build_slice_embedder(self.settings, self.models, prefetcher)
        self.segmenter = InteractiveSegmenter(self.models, volumes=volumes, embedder=embedder)
        self.volume_segmenter = VolumeSegmenter(self.models, embedder, volumes,
                                                max_slices=self.settings.max_propagation_slices)
        self.semantic = build_semantic_segmenter(self.settings, embedder, volumes)
        self.instances = InstanceSegmenter(self.models, embedder, self.semantic, volumes)
        self.retrainer = build_retrainer(self.settings, self.models, embedder)
        self.finetuner = build_finetuner(self.settings, self.models, embedder)
        self._schedule_stops: List[Any] = []
        self.audit = AuditLog(self.settings.audit_dir)  # also written by training processes (see train())
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="MedicoSAM Label",
            description="Interactive MedicoSAM segmentation of CT and MRI",
            version=__version__,
        )
        # MONAI Label would run every scoring method after each training round, in the training process too,
        # where on_init_complete never runs; our Dice scoring runs only after a promoted semantic round (train()).
        self._auto_update_scoring = False

    def info(self) -> Dict[str, Any]:
        info = super().info()
        info["capabilities"] = capabilities(self._infers)  # what each model offers per image layout (viewers)
        return info

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            if settings.MONAI_LABEL_DATASTORE.lower() not in ("", "dicomweb"):
                return super().init_datastore()  # XNAT, DSA: MONAI Label's own
            self.studies = self.studies.rstrip("/")
            return pacs_datastore(self.studies, self.settings, self.segmentation_author)
        return folder_datastore(self.studies)

    def segmentation_author(self) -> SegmentationAuthor:
        """What a DICOM SEG says made it, and who saved it."""
        user = current_user()
        return segmentation_author(self.models.status, self.semantic.store.serving(), self.finetuner.store.serving(),
                                   user.username if user is not None else None)

    def init_infers(self) -> Dict[str, Any]:
        return {
            INTERACTIVE: InteractiveInfer(self.segmenter),
            "medicosam_3d": PropagationInfer(self.volume_segmenter),
            SEMANTIC: SemanticInfer(self.semantic, self.settings.classes, self.instances),
            "medicosam_instances": InstancesInfer(self.instances),
        }

    def init_trainers(self) -> Dict[str, Any]:
        return {
            SEMANTIC: SemanticTrain(self.retrainer, self.settings.training, dict(self.conf or {}), self.studies),
            INTERACTIVE: InteractiveTrain(self.finetuner, self.settings.finetune),
        }

    def init_strategies(self) -> Dict[str, Any]:
        return {
            "medicosam_uncertainty": UncertaintyStrategy(UncertaintyRanker(self.semantic)),
            "random": RandomStrategy(),
            "first": First(),
        }

    def init_scoring_methods(self) -> Dict[str, Any]:
        return {"medicosam_dice": DiceScoring(self.semantic, self.settings.training.max_slices_per_image)}

    def on_init_complete(self) -> None:
        # MONAI Label would run every scoring method at start-up and after each sample request; our
        # Dice scoring runs after each training round instead (see train()).
        self._auto_update_scoring = False
        super().on_init_complete()
        from monailabel.app import app as fastapi_app  # built by the server before the app is initialised
        from monailabel.interfaces.utils.app import app_instance

        limit_log_records()  # again: handlers configured since __init__ get the filter too
        guard_requests(fastapi_app, app_instance)  # before the thread-pool rebuild, which keeps the checks
        serve_heavy_endpoints_in_threads()

        if self.settings.viewer == "monailabel":
            serve_ohif(fastapi_app)
        else:
            serve_viewer(fastapi_app, lambda: viewer_app_config(self.settings.viewer_dicomweb))
        self.access = lock_down(fastapi_app, self.settings, self.audit)
        serve_service_endpoints(fastapi_app, self)
        self.models.start_loading()
        for model, schedule in ((SEMANTIC, self.settings.retrain_schedule), (INTERACTIVE, self.settings.finetune_schedule)):
            scheduler = build_scheduler(schedule, lambda model=model: self._train_if_new_labels(model, "schedule", 1))
            if scheduler is not None:
                self._schedule_stops.append(run_in_background(scheduler))
                logger.info("%s training scheduled: %s", model, schedule)
        PromptShutdown(on_stop=[self._stop_background_work]).install()

    def _stop_background_work(self) -> None:
        """On SIGTERM: no new prefetch encodes or scheduled rounds (see lib/shutdown.py for the rest)."""
        if self.segmenter.prefetcher is not None:
            self.segmenter.prefetcher.stop(timeout=0)
        for stop in self._schedule_stops:
            stop.set()

    def on_save_label(self, image_id: str, label_id: str) -> Dict[str, Any]:
        result = super().on_save_label(image_id, label_id) or {}
        for model, every, key in (
            (SEMANTIC, self.settings.retrain_after_labels, "retraining"),
            (INTERACTIVE, self.settings.finetune_after_labels, "finetuning"),
        ):
            if every > 0:
                started = self._train_if_new_labels(model, f"{every} new labels", every)
                if started:
                    result[key] = started
        return result

    def _train_if_new_labels(self, model: str, why: str, needed: int) -> str:
        """Queue a training round of ``model`` when at least ``needed`` final labels are new to it and no
        training is running (MONAI Label runs one at a time; the next label save or schedule tick retries)."""
        learner = self.retrainer if model == SEMANTIC else self.finetuner
        try:
            new = len(learner.new_labels(labelled_studies(self.datastore())))
        except Exception:  # a trigger must never fail the label save that called it
            logger.exception("Could not count new labels")
            return ""
        if new < needed:
            return ""
        running, _ = AsyncTask.status("train", check_if_running=True)
        if running:
            return ""
        self.async_training(model, params={model: {"min_new_labels": needed}}, enqueue=True)
        logger.info("%s training started (%s): %d new labels", model, why, new)
        return f"started: {new} new labels"

    # -- the names a request may use, checked before MONAI Label answers 500 or starts a background task --

    def task_names(self, kind: str) -> List[str]:
        """The registered names of one kind of task: ``model``, ``trainer``, ``strategy``, ``scoring method``."""
        tasks = {
            "model": self._infers,
            "trainer": self._trainers,
            "strategy": self._strategies,
            "scoring method": self._scoring_methods,
        }[kind]
        return sorted(tasks)

    def request_model(self, model: str) -> Any:
        """The request model (:mod:`medicosam_app.api`) the task ``model`` reads its request with; None for a
        task that declares none."""
        return getattr(self._infers.get(model), "request_model", None)

    def batch_models(self) -> List[str]:
        """The models batch inference can run: those that need no prompts (type segmentation)."""
        return sorted(name for name, task in self._infers.items() if getattr(task, "type", None) == InferType.SEGMENTATION)

    def require_task(self, kind: str, name: Any) -> str:
        """``name`` if a task of ``kind`` is registered under it; else a 404 that lists the names there are."""
        names = self.task_names(kind)
        if isinstance(name, str) and name in names:
            return name
        raise InvalidRequestError(
            f"There is no {kind} {name!r} on this server; there are: {', '.join(names) or 'none'} (GET /info/).",
            status=404,
        )

    def check_train_request(self, request: Mapping[str, Any]) -> None:
        """The trainer exists and accepts the request's options (MONAI Label would start a background
        process that fails where the client cannot see it)."""
        trainer = self._trainers[self.require_task("trainer", request.get("model"))]
        check = getattr(trainer, "check_request", None)
        if check is not None:
            check(request)

    def next_sample(self, request):
        self.require_task("strategy", request.get("strategy") or DEFAULT_STRATEGY)
        return super().next_sample(request)

    def scoring(self, request, datastore=None):
        self.require_task("scoring method", request.get("method"))
        return super().scoring(request, datastore)

    def train(self, request):
        self.check_train_request(request)
        started = time.perf_counter()
        result = super().train(request)
        version_key = "interactive_version" if request.get("model") == INTERACTIVE else "semantic_version"
        audit_training(self.audit, request, result, time.perf_counter() - started, version_key)
        if isinstance(result, dict) and result.get("promoted") and request.get("model") == SEMANTIC:
            scores = self.scoring({"method": "medicosam_dice"})
            logger.info("Dice of %s on labelled images: %s", result.get("version"),
                        {k: v.get("mean") for k, v in scores.items() if isinstance(v, dict)})
        return result

    def infer(self, request, datastore=None):
        """Serve only images the datastore lists, or a session's upload: a request never names a file path."""
        self.require_task("model", request.get("model"))
        image_id = request.get("image")
        # MONAI Label runs the task in its own thread pool, which does not inherit this request's cancellation.
        request = carry_cancellation(dict(request))
        if request.get("session"):
            self._require_session_image(image_id)
            return super().infer(request, datastore)
        if not isinstance(image_id, str) or not image_id.strip():
            raise InvalidRequestError(f"'image' must be an image id (GET /datastore/ lists them), got {image_id!r}.")
        store = datastore or self.datastore()
        if not store.get_image_uri(image_id):
            raise InvalidRequestError(
                f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.", status=404
            )
        options = InferenceFields.read(request).monai_label_options()
        save = options.pop("save_label")
        result = super().infer(dict(request, image_id=image_id, **options, save_label=False), store)
        if save:
            result["label"] = self._save_inference_label(store, request, image_id, options["label_tag"], result)
        return result

    def _save_inference_label(
        self, store: Datastore, request: Mapping[str, Any], image_id: str, tag: str, result: Dict[str, Any]
    ) -> Any:
        """``save_label``: the result saved as a draft label, its annotator recorded as a label save records it
        (the signed-in user, else the request's ``client_id``); MONAI Label's own save recorded nobody."""
        file = result.get("file")
        if not file or not os.path.exists(file):
            return result.get("label")
        info: Dict[str, Any] = {"model": request.get("model"), "params": result.get("params")}
        client_id = optional_text(request.get("client_id"), "client_id")
        if client_id is not None:
            info["client_id"] = client_id
        return store.save_label(image_id, file, tag, info)

    def batch_infer(self, request, datastore=None):
        """MONAI Label's batch inference, for models that need no prompts, placed on the CPU when there is no
        GPU (it divided by zero there). The server (``run_sync``) and the background process both come here."""
        require_batch_model(self, request.get("model"))
        return super().batch_infer({**request, **batch_devices(request)}, datastore)

    def _require_session_image(self, image: Any) -> None:
        """A session's image lies in the sessions folder; anything else claiming to be one is refused."""
        sessions = self.sessions()
        if sessions is not None and isinstance(image, str) and image:
            folder = Path(sessions.store_path).resolve()
            if folder in Path(image).resolve().parents:
                return
        raise InvalidRequestError("The session's image was not found: upload it again with PUT /session/.", status=404)
