"""``medicosam_interactive``: one click or box → one slice."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from ..interactive.slice_segmenter import ClickContext
from .fields import Flag, Integer, OptionalText, Text
from .prompts import PromptFields


class ClickRequest(PromptFields):
    """A click request as Slicer and OHIF send it: the prompts, the image, who clicks (``client_id``), on which
    label, whether to forget that client's earlier clicks (``reset_state``), and the slicing ``axis``.

    ``image`` is the app's checked ``image_id`` where MONAI Label set one (a session's file), else the ``image``
    the client sent."""

    image: Text(key="image")
    client_id: OptionalText() = None
    label: OptionalText() = None
    reset_state: Flag = False
    axis: Integer(0, 2) = 2

    @model_validator(mode="before")
    @classmethod
    def _checked_image_id_first(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("image_id"):
            return {**values, "image": values["image_id"]}
        return values

    def context(self, default_label: str) -> ClickContext:
        """Who clicks on what, for the refinement memory (``label`` defaults to the task's first label)."""
        return ClickContext(self.image, self.client_id, self.label or default_label, self.reset_state)
