"""Build the bundled sample datastore from real images that installed packages ship, plus a CT phantom.

    python sample-data/build_datastore.py [--out sample-data/datastore]

- mni152_t1.nii.gz: nilearn's MNI ICBM152 2009a T1 template (real 3D MRI, RAS-stored NIfTI), with a
  final label (1 grey matter, 2 white matter) taken from its tissue probability maps (argmax, p > 0.5).
- pydicom_ct_small / pydicom_mr_small: pydicom's single-slice CT and MR test images.
- phantom_ct.nii.gz: a deterministic synthetic CT (HU) with anisotropic spacing, an LPS direction and
  organs placed asymmetrically, so that a flipped or transposed result is visibly wrong.

Nothing is downloaded; the files are generated, never committed. Existing files are kept.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger("sample-data")
LABEL_NAMES = {"grey_matter": 1, "white_matter": 2}


def nilearn_file(name: str) -> Path:
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).parent / "data" / name


def _pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def _write(image: sitk.Image, path: Path) -> None:
    partial = path.with_name(".part_" + path.name)
    sitk.WriteImage(image, str(partial), useCompression=True)
    partial.replace(path)


def build_mni(images: Path, labels: Path) -> None:
    t1 = sitk.ReadImage(str(nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")), sitk.sitkFloat32)
    gm = sitk.GetArrayFromImage(sitk.ReadImage(str(nilearn_file("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"))))
    wm = sitk.GetArrayFromImage(sitk.ReadImage(str(nilearn_file("mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"))))
    tissue = np.zeros(gm.shape, dtype=np.uint8)
    tissue[(gm > 0.5) & (gm >= wm)] = LABEL_NAMES["grey_matter"]
    tissue[(wm > 0.5) & (wm > gm)] = LABEL_NAMES["white_matter"]
    label = sitk.GetImageFromArray(tissue)
    label.CopyInformation(t1)
    _write(t1, images / "mni152_t1.nii.gz")
    _write(label, labels / "mni152_t1.nii.gz")


def build_pydicom_slices(images: Path) -> None:
    for name, out in (("CT_small.dcm", "pydicom_ct_small.nii.gz"), ("MR_small.dcm", "pydicom_mr_small.nii.gz")):
        image = sitk.ReadImage(str(_pydicom_file(name)))
        _write(sitk.Cast(image, sitk.sitkInt16), images / out)


PHANTOM_LABELS = {"liver": 1, "spine": 2, "lesion": 3}


def _phantom_organs(shift=(0, 0, 0)):
    """Boolean masks of the phantom's body and organs; ``shift`` moves the organs (not the body) in voxels."""
    i, j, k = np.meshgrid(np.arange(128), np.arange(96), np.arange(40), indexing="ij")
    body = ((i - 64) / 58.0) ** 2 + ((j - 50) / 40.0) ** 2 <= 1.0
    i, j, k = i - shift[0], j - shift[1], k - shift[2]
    liver = ((i - 38) / 22.0) ** 2 + ((j - 40) / 18.0) ** 2 + ((k - 18) / 14.0) ** 2 <= 1.0
    spine = ((i - 64) / 8.0) ** 2 + ((j - 78) / 8.0) ** 2 <= 1.0
    lesion = ((i - 84) / 7.0) ** 2 + ((j - 36) / 6.0) ** 2 + ((k - 30) / 4.0) ** 2 <= 1.0
    return body, liver, spine, lesion


def _phantom_image(array: np.ndarray, dtype) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(dtype).transpose(2, 1, 0))
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-51.2, -38.4, -50.0))
    return image  # identity direction: i → patient left, j → posterior, k → superior (LPS)


def make_ct_phantom(shift=(0, 0, 0), noise_seed: int = 7) -> sitk.Image:
    """A 128 x 96 x 40 CT in HU: body, liver on the patient's right, spine posterior, a lesion near the top.
    ``shift`` moves the organs and ``noise_seed`` draws other noise, for a set of phantom "patients"."""
    body, liver, spine, lesion = _phantom_organs(shift)
    hu = np.full(body.shape, -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[liver & body] = 60.0
    hu[spine & body] = 700.0
    hu[lesion & body] = 120.0
    hu += np.random.default_rng(noise_seed).normal(0.0, 8.0, hu.shape).astype(np.float32)
    return _phantom_image(np.round(hu), np.int16)


def make_ct_phantom_label(shift=(0, 0, 0)) -> sitk.Image:
    """The phantom's organs as a label (PHANTOM_LABELS), in the phantom's exact geometry."""
    body, liver, spine, lesion = _phantom_organs(shift)
    label = np.zeros(body.shape, dtype=np.uint8)
    label[liver & body] = PHANTOM_LABELS["liver"]
    label[spine & body] = PHANTOM_LABELS["spine"]
    label[lesion & body] = PHANTOM_LABELS["lesion"]
    return _phantom_image(label, np.uint8)


def build(out: Path) -> Path:
    images, labels = out, out / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    steps = {
        "mni152_t1.nii.gz": lambda: build_mni(images, labels),
        "pydicom_ct_small.nii.gz": lambda: build_pydicom_slices(images),
        "phantom_ct.nii.gz": lambda: _write(make_ct_phantom(), images / "phantom_ct.nii.gz"),
    }
    for name, step in steps.items():
        if (images / name).exists():
            continue
        logger.info("building %s", name)
        step()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "datastore")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out))


if __name__ == "__main__":
    main()
