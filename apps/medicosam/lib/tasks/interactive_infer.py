"""``medicosam_interactive``: MONAI Label's deepgrow-type task (Slicer SmartEdit, OHIF point prompts)."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Tuple

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from medicosam_app.api import ClickRequest
from medicosam_app.interactive.slice_segmenter import InteractiveSegmenter
from medicosam_app.runtime.heap import heap_tuning_state

from ..http.http_errors import as_http_errors
from .infer_audit import audit_inference
from .results import write_result

logger = logging.getLogger(__name__)


class InteractiveInfer(InferTask):
    """One click → one slice: points (``foreground``/``background``), an ``roi`` box, ``slice``."""

    request_model = ClickRequest  # the HTTP guard reads the request with it too, before the endpoint runs

    def __init__(self, segmenter: InteractiveSegmenter, label_names=("label",)) -> None:
        super().__init__(
            type=InferType.DEEPGROW,
            labels=list(label_names),
            dimension=2,
            description="MedicoSAM (SAM ViT-B for medical images): click or box on a slice",
            config={"axis": 2, "reset_state": False},
        )
        self.segmenter = segmenter

    def info(self) -> Dict[str, Any]:
        info = super().info()
        info["model_status"] = self.segmenter.models.status
        info["embedding_cache"] = self.segmenter.embeddings.stats
        info["malloc_tuning"] = heap_tuning_state()
        if self.segmenter.prefetcher is not None:
            info["prefetch"] = self.segmenter.prefetcher.stats
        return info

    def is_valid(self) -> bool:
        return True  # shown even when the weights are missing, so /info can say why

    def __call__(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        started = time.perf_counter()
        with as_http_errors():
            asked = self.request_model.read(request)
            context = asked.context(default_label=self.labels[0])
            label = context.label
            result = self.segmenter.segment(request["image"], asked.prompts(), context, axis=asked.axis)
            write_started = time.perf_counter()
            path = write_result(result.label, result.volume, asked)
            written = time.perf_counter()
        audit_inference(
            "medicosam_interactive", asked, result.label, axis=result.axis, slice_index=result.slice_index,
            checkpoint_xxh128=self.segmenter.models.status.get("xxh128"), interactive_version=result.decoder_version,
        )
        latencies = dict(result.latencies)
        latencies["write"] = round(written - write_started, 4)
        latencies["total"] = round(time.perf_counter() - started, 4)
        latencies["embedding_cached"] = result.embedding_cached
        latencies["embedding_source"] = result.embedding_source
        return str(path), {
            "label_names": {label: 1},
            "slice": result.slice_index,
            "axis": result.axis,
            "layout": result.volume.layout,  # volume (slices), cine (frames), stack or plane (images)
            "predicted_iou": round(result.predicted_iou, 4),
            "interactive_version": result.decoder_version,
            "latencies": latencies,
        }
