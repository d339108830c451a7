"""The bundled datastore builds from what the installed packages ship, deterministically."""

import numpy as np
import SimpleITK as sitk

import build_datastore


def test_datastore_has_real_mri_with_tissue_labels_ct_mr_and_phantom(tmp_path):
    out = build_datastore.build(tmp_path / "ds")
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert names == ["mni152_t1.nii.gz", "phantom_ct.nii.gz", "pydicom_ct_small.nii.gz", "pydicom_mr_small.nii.gz"]
    t1 = sitk.ReadImage(str(out / "mni152_t1.nii.gz"))
    label = sitk.ReadImage(str(out / "labels" / "final" / "mni152_t1.nii.gz"))
    assert label.GetSize() == t1.GetSize() and np.allclose(label.GetDirection(), t1.GetDirection())
    values, counts = np.unique(sitk.GetArrayFromImage(label), return_counts=True)
    assert values.tolist() == [0, 1, 2] and counts[1] > 100_000 and counts[2] > 100_000


def test_phantom_is_deterministic_and_asymmetric():
    module = build_datastore
    a, b = (sitk.GetArrayFromImage(module.make_ct_phantom()) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, a[:, :, ::-1]) and not np.array_equal(a, a[:, ::-1, :])
