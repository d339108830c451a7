"""A 2D label slice kept as its bounding box's contents: training sets hold thousands of slices, and an organ
is a small part of its slice (a 60² px object on a 512² slice: ~450 bytes packed instead of 262 kB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np


@dataclass(frozen=True)
class PackedSlice:
    """``array`` (H, W) of bool or uint8, zeros outside ``box``; a bool slice's box is stored as bits."""

    shape: Tuple[int, int]
    dtype: str  # "bool" or "uint8"
    box: Tuple[int, int, int, int]  # rows [r0, r1), columns [c0, c1); empty when all zero
    data: bytes

    @classmethod
    def of(cls, array: np.ndarray) -> "PackedSlice":
        if array.ndim != 2 or array.dtype not in (np.bool_, np.uint8):
            raise ValueError(f"a 2D bool or uint8 slice is packed, not {array.dtype} {array.shape}")
        shape = (int(array.shape[0]), int(array.shape[1]))
        dtype = "bool" if array.dtype == np.bool_ else "uint8"
        rows, cols = np.flatnonzero(array.any(1)), np.flatnonzero(array.any(0))
        if not rows.size:
            return cls(shape, dtype, (0, 0, 0, 0), b"")
        box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        crop = np.ascontiguousarray(array[box[0] : box[1], box[2] : box[3]])
        return cls(shape, dtype, box, np.packbits(crop, axis=None).tobytes() if dtype == "bool" else crop.tobytes())

    def unpack(self) -> np.ndarray:
        """The slice as it was given."""
        array = np.zeros(self.shape, np.bool_ if self.dtype == "bool" else np.uint8)
        r0, r1, c0, c1 = self.box
        if r1 > r0:
            count = (r1 - r0) * (c1 - c0)
            raw = np.frombuffer(self.data, np.uint8)
            values = np.unpackbits(raw, count=count).astype(bool) if self.dtype == "bool" else raw[:count]
            array[r0:r1, c0:c1] = values.reshape(r1 - r0, c1 - c0)
        return array

    @property
    def nbytes(self) -> int:
        return len(self.data)
