"""The semantic model's classes: names and the label values they are saved with (0 is background)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import numpy as np

from ..errors import InvalidRequestError

DEFAULT_CLASSES = "grey_matter,white_matter"  # the sample data's MNI tissue labels


@dataclass(frozen=True)
class SemanticClasses:
    """Foreground classes in a fixed order; class index ``i + 1`` is saved as label value ``values[i]``."""

    names: Tuple[str, ...]
    values: Tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> "SemanticClasses":
        """``"liver,spleen"`` (values 1, 2, ...) or a JSON object ``{"liver": 1, "spleen": 6}``."""
        text = (text or "").strip()
        if text.startswith("{"):
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as error:
                raise InvalidRequestError(f"labels is not valid JSON: {error}") from error
            return cls.from_mapping(mapping)
        names = [name.strip() for name in text.split(",") if name.strip()]
        return cls.from_mapping({name: i + 1 for i, name in enumerate(names)})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, int]) -> "SemanticClasses":
        items = sorted(((str(k), int(v)) for k, v in mapping.items() if str(k).lower() != "background"), key=lambda kv: kv[1])
        if not items:
            raise InvalidRequestError("The semantic model needs at least one label class (conf 'labels').")
        values = [v for _, v in items]
        if len(set(values)) != len(values) or min(values) < 1 or max(values) > 255:
            raise InvalidRequestError(f"Label values must be distinct and within 1..255, got {dict(items)}.")
        return cls(tuple(k for k, _ in items), tuple(values))

    @property
    def num_classes(self) -> int:
        """Output channels, background included."""
        return len(self.names) + 1

    def label_names(self) -> Dict[str, int]:
        """``label_names`` as MONAI Label clients expect it: name → saved value."""
        return dict(zip(self.names, self.values))

    def to_indices(self, label: np.ndarray) -> np.ndarray:
        """Saved label values → class indices 0..N (values of other structures count as background)."""
        lookup = np.zeros(256, dtype=np.uint8)
        for index, value in enumerate(self.values, start=1):
            lookup[value] = index
        clipped = np.clip(label, 0, 255).astype(np.uint8, copy=False)
        return lookup[clipped]

    def to_values(self, indices: np.ndarray) -> np.ndarray:
        """Class indices 0..N → saved label values."""
        lookup = np.array((0,) + self.values, dtype=np.uint8)
        return lookup[indices]
