"""Shared fixtures: tiny SAM checkpoints and asymmetric test volumes, all made on the spot (no network)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import SimpleITK as sitk

from medicosam_app.api import PromptFields
from medicosam_app.interactive.prompts import VoxelPrompts
from medicosam_app.model.random_checkpoint import TINY_SAM, write_random_checkpoint

# The sample-data scripts (build_datastore, build_dicom) are what tests build their data with.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample-data"))
import build_datastore  # noqa: E402

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


@pytest.fixture(scope="session")
def phantom_checkpoint(tmp_path_factory) -> Path:
    """A tiny random SAM (seed 1) whose first click on the CT phantom gives a partial mask, not an empty one
    (seed 0 answers empty there), so tests that look at a mask on the phantom have something to see."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt_phantom") / "tiny_sam.pt", TINY_SAM, seed=1)


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

    def base_predictor(self):
        return self._predictor

    def encoder_key_for(self, predictor):
        return self.encoder_key


# -- semantic model -------------------------------------------------------------------------------

SEMANTIC_TRAINING = {  # small and quick: a narrow decoder, few slices, a learning rate for few epochs
    "initial_features": 8,
    "max_slices_per_image": 16,
    "learning_rate": 1e-3,
    "batch_size": 4,
}


@pytest.fixture(scope="session")
def tiny256_checkpoint(tmp_path_factory) -> Path:
    """A tiny SAM with a 256² input (16² features): semantic training tests run in seconds."""
    import dataclasses

    arch = dataclasses.replace(TINY_SAM, image_size=256)
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt256") / "tiny256_sam.pt", arch, seed=0)


@pytest.fixture(scope="session")
def mni_template(tmp_path_factory) -> Path:
    """The MNI T1 template and its grey/white matter label, built once by the sample-data script into a
    temporary folder: a clean clone has no sample-data/datastore/ (it is generated, never committed)."""
    folder = tmp_path_factory.mktemp("mni_template")
    (folder / "labels").mkdir()
    build_datastore.build_mni(folder, folder / "labels")
    return folder


def write_mni_subjects(
    folder: Path, template: Path, count: int = 3, unlabelled: int = 1, shrink: int = 4
) -> Path:
    """A MONAI Label datastore of MNI-derived "subjects" (downsampled; some mirrored left-right, intensities
    scaled) with their grey/white matter labels in labels/final/, plus ``unlabelled`` images without labels.
    ``template`` is the folder the ``mni_template`` fixture gives."""
    t1 = sitk.ReadImage(str(template / "mni152_t1.nii.gz"), sitk.sitkFloat32)
    tissue = sitk.ReadImage(str(template / "labels" / "mni152_t1.nii.gz"))
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    for n in range(count + unlabelled):
        image, label = sitk.Shrink(t1, [shrink] * 3), sitk.Shrink(tissue, [shrink] * 3)
        if n % 2:
            image, label = sitk.Flip(image, [True, False, False]), sitk.Flip(label, [True, False, False])
        sitk.WriteImage(image * (0.8 + 0.2 * n), str(folder / f"subject_{n}.nii.gz"))
        if n < count:
            sitk.WriteImage(label, str(labels / f"subject_{n}.nii.gz"))
    return folder


PHANTOM_SHIFTS = [(0, 0, 0), (2, -1, 1), (-2, 1, -1), (1, 2, 0), (-1, -2, 1), (2, 1, -1)]


def write_phantom_subjects(folder: Path, count: int = 4) -> Path:
    """A MONAI Label datastore of CT phantom "patients" (organs shifted, other noise) with liver, spine and
    lesion labels in labels/final/ (values as build_datastore.PHANTOM_LABELS)."""
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        shift = PHANTOM_SHIFTS[n % len(PHANTOM_SHIFTS)]
        sitk.WriteImage(build_datastore.make_ct_phantom(shift, noise_seed=7 + n), str(folder / f"phantom_{n}.nii.gz"))
        sitk.WriteImage(build_datastore.make_ct_phantom_label(shift), str(labels / f"phantom_{n}.nii.gz"))
    return folder


@pytest.fixture()
def mni_studies(tmp_path, mni_template) -> Path:
    return write_mni_subjects(tmp_path / "studies", mni_template)


def gdcm_series_image(folder: Path) -> sitk.Image:
    """A DICOM series as GDCM orders and reads it: the reference, independent of the server's own reader."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@contextlib.contextmanager
def small_filesystem(point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (like "24m") mounted at ``point``, so writes meet the kernel's own ENOSPC; unmounted
    afterwards. Mounting needs root (CI runs as root); elsewhere the test says so and skips."""
    point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "medicosam-small-disk", str(point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def random_label_bytes(reference: sitk.Image, seed: int) -> bytes:
    """A random class map (0, 1, 2) in ``reference``'s geometry, as a .nii.gz file's bytes: a label from
    another save or a truncated file cannot pass for it (random voxels barely compress)."""
    import tempfile

    array = np.random.default_rng(seed).integers(0, 3, size=sitk.GetArrayFromImage(reference).shape, dtype=np.uint8)
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(reference)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "label.nii.gz"
        sitk.WriteImage(label, str(path))
        return path.read_bytes()


def requested(params: dict) -> VoxelPrompts:
    """Prompts written as a client sends them (``{"foreground": [[i, j, k]], "roi": [...], "slice": k}``), read by the
    request layer into what the segmenters take."""
    return PromptFields.read(params).prompts()
