"""Channels of an image → what the model can be given: grey, or three channels."""

from __future__ import annotations

import numpy as np

from ..errors import ImageReadError


def image_channels(array: np.ndarray, name: str) -> np.ndarray:
    """``[..., channel]`` values as the model can take them: grey (no channel axis), RGB, RGBA without its alpha,
    two channels (nuclear, membrane) as CellSAM arranges them: a blank first channel, then the two."""
    if array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 1):
        return array.reshape(array.shape[:3])
    channels = array.shape[-1]
    if channels == 2:
        return np.concatenate([np.zeros_like(array[..., :1]), array], axis=-1)
    if channels in (3, 4):
        return array[..., :3]
    raise ImageReadError(
        f"{name} has {channels} values per voxel: one (grey), two (nuclear + membrane), three (RGB) or four (RGBA, "
        "alpha ignored) can be given to the model. Save the channels to segment as their own file."
    )
