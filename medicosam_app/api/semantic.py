"""``medicosam_semantic``: the served semantic decoder over the whole image, optionally redrawn by MedicoSAM."""

from __future__ import annotations

from .fields import Flag, Integer
from .propagation import PropagationFields


class SemanticRequest(PropagationFields):
    """``refine``: redraw each component with MedicoSAM (drawing settings as for propagation); components smaller
    than ``min_voxels`` are left as the decoder drew them."""

    refine: Flag = False
    min_voxels: Integer(1, 1 << 30) = 10
