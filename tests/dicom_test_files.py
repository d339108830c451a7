"""DICOM files nobody on this team wrote: pydicom's own test files and the pydicom-data package (pinned in
requirements.txt). pydicom 2.4 finds pydicom-data through pkg_resources, which current setuptools no longer
ships, so the folders are looked up directly."""

from __future__ import annotations

from pathlib import Path

import data_store
import pydicom
from pydicom.dataset import Dataset

FOLDERS = (Path(pydicom.__file__).parent / "data" / "test_files", Path(data_store.__file__).parent / "data")


def pydicom_file(name: str) -> Path:
    """The path of one of pydicom's test files; fails (it does not skip) when the pinned data is missing."""
    for folder in FOLDERS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} is in neither {FOLDERS[0]} nor {FOLDERS[1]}: pip install -r requirements.txt")


def read_test_file(name: str) -> Dataset:
    return pydicom.dcmread(str(pydicom_file(name)))
