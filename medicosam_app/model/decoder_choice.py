"""Which mask decoder a request is served with: the interface the provider asks, filled by the learning layers.

The provider owns the loaded checkpoint; whether a finetuned decoder version replaces the checkpoint's own is the
business of the interactive finetuning (:class:`medicosam_app.finetune.serving.ServedDecoder`). The provider is
handed such an object and asks it per request, so the network layer imports nothing from the layers above it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Protocol

from .predictor import PromptPredictor


class DecoderChoice(Protocol):
    """Chooses the predictor a request is served with, from the checkpoint's own (``base``)."""

    @property
    def version(self) -> Optional[str]:
        """The decoder version the last request used (None: the checkpoint's own)."""

    def predictor(self, base: PromptPredictor, checkpoint_hash: str) -> PromptPredictor:
        """``base``, or a predictor with ``base``'s encoder and the serving decoder version."""

    def status(self) -> Dict[str, Any]:
        """What ``/info`` shows about the decoder served."""
