"""MONAI Label's own SAM2 2D task, served as MONAI Label serves it: the baseline for click_latency.py.

``MONAI_SAM_MODEL_PT`` / ``MONAI_SAM_MODEL_CFG`` name the checkpoint and config files in this app's
``model/`` folder (the benchmark writes a random-weight SAM2.1 hiera-tiny there; nothing is downloaded).
"""

from __future__ import annotations

import os
from typing import Any, Dict

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.sam2.infer import Sam2InferTask


class Sam2BaselineApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]) -> None:
        self.model_dir = os.environ["SAM2_BASELINE_MODEL_DIR"]
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="SAM2 baseline", version="0")

    def init_infers(self) -> Dict[str, Any]:
        return {"sam_2d": Sam2InferTask(self.model_dir, type=InferType.DEEPGROW, dimension=2)}
