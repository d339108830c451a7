"""What iterative refinement remembers between clicks: SAM's last low-res logits per user, image, label and slice."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class RefinementKey:
    client_id: str
    image_id: str
    label: str
    axis: int
    slice_index: int


class RefinementMemory:
    """The previous 256² logits for each key, so the next click refines instead of starting over.

    At most ``max_entries`` slices, the least recently clicked forgotten first: 256 kB each, 64 MB in all by
    default, whatever the server has served (a slice clicked again after that starts over)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._logits: "OrderedDict[RefinementKey, torch.Tensor]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: RefinementKey) -> Optional[torch.Tensor]:
        with self._lock:
            logits = self._logits.get(key)
            if logits is not None:
                self._logits.move_to_end(key)
            return logits

    def put(self, key: RefinementKey, logits: torch.Tensor) -> None:
        with self._lock:
            self._logits[key] = logits
            self._logits.move_to_end(key)
            while len(self._logits) > self.max_entries:
                self._logits.popitem(last=False)

    def reset(self, client_id: str, image_id: str, label: str) -> int:
        """Forget every slice of one user's label on one image; returns how many entries went."""
        with self._lock:
            stale = [k for k in self._logits if (k.client_id, k.image_id, k.label) == (client_id, image_id, label)]
            for key in stale:
                del self._logits[key]
            return len(stale)
