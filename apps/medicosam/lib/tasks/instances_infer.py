"""``medicosam_instances``: automatic instance segmentation (Slicer "Auto Segmentation", OHIF auto tab).

A ``segmentation``-type task, so both clients list it. The answer is a label with values 1..N, one per
instance, named ``<class> <n>`` in ``label_names`` so each becomes a segment the client can save (a DICOM
SEG then has one segment per instance, its class in the segment label), plus one JSON record per instance.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Tuple

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from medicosam_app.instances.mask_generator import GridSettings
from medicosam_app.api import InstanceRequest
from medicosam_app.instances.segmenter import InstanceOptions, InstanceSegmenter
from medicosam_app.interactive.propagation_settings import PropagationSettings

from ..http.disconnects import cancellable_request
from ..http.http_errors import as_http_errors
from .infer_audit import audit_inference
from .results import write_result


class InstancesInfer(InferTask):
    """``mode``: ``semantic`` (the semantic decoder proposes), ``everything`` (a point grid on one slice),
    ``boxes`` (the request's boxes); MedicoSAM draws every instance."""

    request_model = InstanceRequest  # the HTTP guard reads the request with it too, before the endpoint runs

    def __init__(self, segmenter: InstanceSegmenter, drawing: PropagationSettings = PropagationSettings()) -> None:
        grid = GridSettings()
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=[],
            dimension=3,
            description="MedicoSAM instances: the semantic model (mode semantic), a point grid on one slice "
            "(mode everything) or your boxes (mode boxes) propose, MedicoSAM draws each object",
            config={
                "mode": "semantic",
                "axis": 2,
                "points_per_side": grid.points_per_side,
                "pred_iou_thresh": grid.pred_iou_thresh,
                "stability_score_thresh": grid.stability_score_thresh,
                "box_nms_thresh": grid.box_nms_thresh,
                "min_area": grid.min_area,
                "min_voxels": InstanceOptions.min_voxels,
                "max_instances": InstanceOptions.max_instances,
                "iou_threshold": drawing.iou_threshold,
                "min_predicted_iou": drawing.min_predicted_iou,
            },
        )
        self.segmenter = segmenter
        self.drawing = drawing

    def info(self) -> Dict[str, Any]:
        info = super().info()
        info["modes"] = ["semantic", "everything", "boxes"]
        info["model_status"] = self.segmenter.models.status
        info["semantic_version"] = self.segmenter.semantic.store.serving()
        return info

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        started = time.perf_counter()
        with cancellable_request(request), as_http_errors():
            asked = self.request_model.read(request)
            options = asked.options(self.drawing)
            result = self.segmenter.segment(request["image"], options)
            write_started = time.perf_counter()
            path = write_result(result.instances.label, result.volume, asked)
            written = time.perf_counter()
        audit_inference(
            "medicosam_instances", asked, result.instances.label, axis=options.axis,
            checkpoint_xxh128=self.segmenter.models.status.get("xxh128"), semantic_version=result.semantic_version,
            interactive_version=result.decoder_version,
        )
        latencies = dict(result.latencies, write=round(written - write_started, 4))
        latencies["total"] = round(time.perf_counter() - started, 4)
        answer: Dict[str, Any] = {
            "label_names": result.instances.label_names,
            "mode": options.mode,
            "axis": options.axis,
            "instances": result.instances.records,
            "interactive_version": result.decoder_version,
            "latencies": latencies,
            **result.details,
        }
        if result.semantic_version is not None:
            answer["model_version"] = result.semantic_version
        return str(path), answer
