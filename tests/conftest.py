"""Shared fixtures: tiny SAM checkpoints and asymmetric test volumes, all made on the spot (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medicosam_app.random_checkpoint import TINY_SAM, write_random_checkpoint

# A direction that is neither identity nor a plain flip: i runs posterior, j runs patient-left, k superior,
# slightly rotated in plane, so any transpose or flip of the slice shows.
OBLIQUE_AXIAL_DIRECTION = (
    0.0, 1.0, 0.0,
    -1.0, 0.0, 0.0,
    0.0, 0.0, 1.0,
)  # row-major 3x3 as ITK wants; columns are the world directions of i, j, k


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A SAM with tiny dimensions and random weights, saved as a plain state dict like vit_b_medicosam.pt."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_sam.pt", TINY_SAM, seed=0)


def asymmetric_array(shape=(40, 30, 12), seed: int = 3) -> np.ndarray:
    """Voxel values that differ everywhere, with a bright off-centre blob: a flip or transpose cannot match."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    values = 3.0 * i + 0.7 * j * j + 11.0 * k + np.random.default_rng(seed).normal(0, 0.1, shape)
    blob = ((i - 0.7 * shape[0]) ** 2 + (j - 0.3 * shape[1]) ** 2) < (0.15 * min(shape[:2])) ** 2
    values[blob] += 400.0
    return values.astype(np.float32)


def write_volume(path: Path, array: np.ndarray, spacing=(0.7, 1.3, 3.0), origin=(10.0, -20.0, 5.0),
                 direction=OBLIQUE_AXIAL_DIRECTION) -> Path:
    """Save ``array[i, j, k]`` with the given geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def oblique_volume_file(tmp_path) -> Path:
    return write_volume(tmp_path / "oblique.nii.gz", asymmetric_array())


class ModelsDouble:
    """Test double for ModelProvider."""

    encoder_key = "double"

    def __init__(self, predictor):
        self._predictor = predictor

    def predictor(self):
        return self._predictor
