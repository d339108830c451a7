"""``medicosam_3d``: prompts on one or more slices, propagated through the volume (or clip)."""

from __future__ import annotations

import dataclasses

from ..interactive.propagation_settings import MAX_FRAME_STEP, PROJECTIONS, PropagationSettings
from .clicks import ClickRequest
from .fields import Choice, Integer, Number, RequestModel


class PropagationFields(RequestModel):
    """How a propagation walks; each key left out keeps the server's default (see
    :class:`~medicosam_app.interactive.propagation_settings.PropagationSettings`)."""

    projection: Choice(PROJECTIONS) = None
    iou_threshold: Number(0.0, 1.0) = None
    min_predicted_iou: Number(0.0, 1.0) = None
    box_extension: Number(0.0, 1.0) = None
    low_confidence: Number(0.0, 1.0) = None
    frame_step: Integer(1, MAX_FRAME_STEP) = None

    def settings(self, defaults: PropagationSettings = PropagationSettings()) -> PropagationSettings:
        """The keys the request sent, over ``defaults``."""
        sent = {name: getattr(self, name) for name in PropagationFields.model_fields if getattr(self, name) is not None}
        return dataclasses.replace(defaults, **sent)


class PropagationRequest(ClickRequest, PropagationFields):
    """A ``medicosam_3d`` request: a click request's keys and the propagation's."""
