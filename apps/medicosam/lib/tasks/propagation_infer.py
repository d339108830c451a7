"""``medicosam_3d``: MONAI Label's 3D deepgrow-type task: prompts on slices, a propagated 3D mask."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Tuple

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from medicosam_app.api import PropagationRequest
from medicosam_app.interactive.propagation_settings import PropagationSettings
from medicosam_app.interactive.volume_segmenter import VolumeSegmenter

from ..http.disconnects import cancellable_request
from ..http.http_errors import as_http_errors
from .infer_audit import audit_inference
from .results import write_result

logger = logging.getLogger(__name__)

class PropagationInfer(InferTask):
    """Points and/or a 3D ``roi`` → the prompted slices, then propagation both ways with a stop rule."""

    request_model = PropagationRequest  # the HTTP guard reads the request with it too, before the endpoint runs

    def __init__(self, segmenter: VolumeSegmenter, defaults: PropagationSettings = PropagationSettings(), label_names=("label",)) -> None:
        super().__init__(
            type=InferType.DEEPGROW,
            labels=list(label_names),
            dimension=3,
            description="MedicoSAM 3D: prompts on one or more slices, propagated through the volume; "
            "the answer lists the slices whose confidence is low",
            config={
                "axis": 2,
                "reset_state": False,
                "projection": defaults.projection,
                "iou_threshold": defaults.iou_threshold,
                "min_predicted_iou": defaults.min_predicted_iou,
                "box_extension": defaults.box_extension,
                "low_confidence": defaults.low_confidence,
                "frame_step": defaults.frame_step,
            },
        )
        self.segmenter = segmenter
        self.defaults = defaults

    def info(self) -> Dict[str, Any]:
        info = super().info()
        info["model_status"] = self.segmenter.models.status
        return info

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        started = time.perf_counter()
        with cancellable_request(request), as_http_errors():
            asked = self.request_model.read(request)
            context = asked.context(default_label=self.labels[0])
            label, axis = context.label, asked.axis
            outcome = self.segmenter.segment(
                request["image"], asked.prompts(), context, axis=axis, settings=asked.settings(self.defaults)
            )
            write_started = time.perf_counter()
            path = write_result(outcome.label, outcome.volume, asked)
            written = time.perf_counter()
        result = outcome.result
        audit_inference(
            "medicosam_3d", asked, outcome.label, axis=axis,
            checkpoint_xxh128=self.segmenter.models.status.get("xxh128"), interactive_version=outcome.decoder_version,
        )
        latencies = dict(outcome.latencies)
        latencies["write"] = round(written - write_started, 4)
        latencies["total"] = round(time.perf_counter() - started, 4)
        low, high = result.slice_range
        logger.info(
            "medicosam_3d: slices %d..%d from %s, %d decoded, low confidence %s",
            low, high, result.prompted_slices, len(result.recomputed), result.low_confidence_slices,
        )
        return str(path), {
            "label_names": {label: 1},
            "axis": axis,
            "layout": outcome.volume.layout,  # volume (slices), cine (frames), stack or plane (images)
            "frame_time_ms": outcome.volume.frame_time_ms,
            "slice_range": [low, high],
            "prompted_slices": result.prompted_slices,
            "corrected_slices": result.corrected_slices,
            "held_slices": result.held_slices,
            "predicted_iou": {str(k): v for k, v in result.predicted_iou.items()},
            "low_confidence_slices": result.low_confidence_slices,
            "stopped": result.stops,
            "recomputed_slices": result.recomputed,
            "interactive_version": outcome.decoder_version,
            "latencies": latencies,
        }
