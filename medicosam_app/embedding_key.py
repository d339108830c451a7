"""What identifies one slice embedding: everything that changes the encoder's output for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddingKey:
    """Image content, slice, preprocessing and encoder (checkpoint hash and numeric precision)."""

    image_hash: str
    axis: int
    index: int
    preprocessing: str
    encoder: str
