"""``medicosam_semantic``: the served semantic decoder over the whole image, optionally redrawn by MedicoSAM."""

from __future__ import annotations

from typing import Any, Dict

from .fields import Flag, InferenceFields, Integer
from .propagation import PropagationFields


class SemanticRequest(PropagationFields, InferenceFields):
    """``refine``: redraw each component with MedicoSAM (drawing settings as for propagation); components smaller
    than ``min_voxels`` are left as the decoder drew them."""

    refine: Flag = False
    min_voxels: Integer(1, 1 << 30) = 10

    def audit_summary(self) -> Dict[str, Any]:
        return self.sent("refine")
