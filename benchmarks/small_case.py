"""A small labelled case the benchmarks build themselves when no datastore is given: the MNI sample 4×
smaller, four labelled subjects (every other one mirrored), and a tiny SAM with random weights (256² input)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Tuple

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sample-data"))

from medicosam_app.model.random_checkpoint import TINY_SAM, write_random_checkpoint  # noqa: E402


def small_case(folder: Path) -> Tuple[Path, Path]:
    """The MNI sample, 4× smaller, four labelled subjects (every other one mirrored); a tiny random SAM."""
    import build_datastore

    template = folder / "template"
    (template / "labels").mkdir(parents=True)
    build_datastore.build_mni(template, template / "labels")
    t1 = sitk.ReadImage(str(template / "mni152_t1.nii.gz"), sitk.sitkFloat32)
    tissue = sitk.ReadImage(str(template / "labels" / "mni152_t1.nii.gz"))
    studies, labels = folder / "studies", folder / "studies" / "labels" / "final"
    labels.mkdir(parents=True)
    for n in range(4):
        image, label = sitk.Shrink(t1, [4] * 3), sitk.Shrink(tissue, [4] * 3)
        if n % 2:
            image, label = sitk.Flip(image, [True, False, False]), sitk.Flip(label, [True, False, False])
        sitk.WriteImage(image * (0.8 + 0.2 * n), str(studies / f"subject_{n}.nii.gz"))
        sitk.WriteImage(label, str(labels / f"subject_{n}.nii.gz"))
    checkpoint = write_random_checkpoint(folder / "tiny256.pt", dataclasses.replace(TINY_SAM, image_size=256), seed=0)
    return studies, checkpoint
