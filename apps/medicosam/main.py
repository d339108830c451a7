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
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402

from lib.datastore import CheckedLocalDatastore  # noqa: E402
from lib.interactive_infer import InteractiveInfer  # noqa: E402
from lib.propagation_infer import PropagationInfer  # noqa: E402
from lib.responsive_server import serve_heavy_endpoints_in_threads  # noqa: E402
from medicosam_app import __version__  # noqa: E402
from medicosam_app.interactive import InteractiveSegmenter  # noqa: E402
from medicosam_app.prefetch import Prefetcher  # noqa: E402
from medicosam_app.services import build_model_provider, build_slice_embedder  # noqa: E402
from medicosam_app.settings import Settings  # noqa: E402
from medicosam_app.volume_cache import VolumeCache  # noqa: E402
from medicosam_app.volume_segmenter import VolumeSegmenter  # noqa: E402

logger = logging.getLogger(__name__)


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
            return super().init_datastore()
        return CheckedLocalDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> Dict[str, Any]:
        return {
            "medicosam_interactive": InteractiveInfer(self.segmenter),
            "medicosam_3d": PropagationInfer(self.volume_segmenter),
        }

    def init_trainers(self) -> Dict[str, Any]:
        return {}

    def on_init_complete(self) -> None:
        super().on_init_complete()
        serve_heavy_endpoints_in_threads()
        self.models.start_loading()

    def infer(self, request, datastore=None):
        """Serve only images the datastore lists: a request never names a file path of its own."""
        image_id = request.get("image")
        store = datastore or self.datastore()
        if isinstance(image_id, str) and not request.get("session"):
            if not store.get_image_uri(image_id):
                raise HTTPException(404, f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.")
            request = dict(request, image_id=image_id)
        return super().infer(request, datastore)
