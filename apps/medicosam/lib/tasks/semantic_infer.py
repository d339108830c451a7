"""``medicosam_semantic`` infer: automatic segmentation (Slicer "Auto Segmentation", OHIF auto tab)."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from medicosam_app.api import SemanticRequest
from medicosam_app.instances.segmenter import InstanceSegmenter
from medicosam_app.semantic.classes import SemanticClasses
from medicosam_app.semantic.segmenter import SemanticSegmenter

from ..http.disconnects import cancellable_request
from ..http.http_errors import as_http_errors
from .infer_audit import audit_inference
from .results import write_result


class SemanticInfer(InferTask):
    """The whole volume, slice by slice, with the promoted semantic decoder version; with ``refine: true``
    MedicoSAM redraws each class component from the decoder's boxes (sharper boundaries, same classes)."""

    request_model = SemanticRequest  # the HTTP guard reads the request with it too, before the endpoint runs

    def __init__(
        self, segmenter: SemanticSegmenter, classes: SemanticClasses, instances: Optional[InstanceSegmenter] = None
    ) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=classes.label_names(),
            dimension=3,
            description="MedicoSAM encoder + UNETR decoder trained on this server's accepted labels",
            config={"refine": False},
        )
        self.segmenter = segmenter
        self.instances = instances

    def info(self) -> Dict[str, Any]:
        info = super().info()
        store = self.segmenter.store
        serving = store.serving()
        info["model_version"] = serving
        if serving is not None:
            info["validation_dice"] = store.metadata(serving).get("metrics", {}).get("val_dice")
        return info

    def is_valid(self) -> bool:
        return True  # listed before the first training, so clients can say what to do

    def __call__(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        started = time.perf_counter()
        extra: Dict[str, Any] = {}
        with cancellable_request(request), as_http_errors():
            asked = self.request_model.read(request)
            if asked.refine and self.instances is not None:
                refined = self.instances.refine_semantic(request["image"], asked.settings(), asked.min_voxels)
                result, label = refined.semantic, refined.label
                extra = {"refined": True, "redrawn_slices": refined.redrawn_slices, "kept_slices": refined.kept_slices,
                         "interactive_version": refined.decoder_version}
            else:
                result = self.segmenter.segment(request["image"])
                label = result.label
            path = write_result(label, result.volume, asked)
        audit_inference("medicosam_semantic", asked, label, semantic_version=result.version)
        latencies = dict(result.latencies, total=round(time.perf_counter() - started, 4))
        return str(path), {
            "label_names": result.classes.label_names(),
            "model_version": result.version,
            "latencies": latencies,
            **extra,
        }
