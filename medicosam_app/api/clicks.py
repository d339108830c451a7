"""``medicosam_interactive``: one click or box → one slice."""

from __future__ import annotations

from ..interactive.slice_segmenter import ClickContext
from .fields import Flag, InferenceFields, Integer, OptionalText, Text
from .prompts import PromptFields


class ClickRequest(PromptFields, InferenceFields):
    """A click request as Slicer and OHIF send it: the prompts, the image, who clicks (``client_id``), on which
    label, whether to forget that client's earlier clicks (``reset_state``), and the slicing ``axis``."""

    image: Text(key="image")  # the refinement memory is kept per image
    label: OptionalText() = None
    reset_state: Flag = False
    axis: Integer(0, 2) = 2

    def context(self, default_label: str) -> ClickContext:
        """Who clicks on what, for the refinement memory (``label`` defaults to the task's first label)."""
        return ClickContext(self.image, self.client_id, self.label or default_label, self.reset_state)
