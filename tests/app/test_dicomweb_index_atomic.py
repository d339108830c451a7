"""The PACS datastore's label-info index is replaced in one step: a write that fails half-way (here: the rename,
as a crash or a full disk would stop it) leaves the previous index whole, never a truncated file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from dicomweb_client import DICOMwebClient

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "apps" / "medicosam"))
from lib.datastore import MedicoSAMDicomWebDatastore  # noqa: E402


def test_a_failed_index_write_leaves_the_previous_index(tmp_path, monkeypatch):
    client = DICOMwebClient("http://127.0.0.1:9/dicom-web")  # never called: the index is local
    store = MedicoSAMDicomWebDatastore(client, [{}], author=lambda: None, cache_path=str(tmp_path))
    try:
        store._datastore.objects.clear()
        store._update_datastore_file()
        index = Path(store._datastore_config_path)
        before = index.read_text()
        assert json.loads(before)["objects"] == {}

        import medicosam_app.atomic_files as atomic_files

        def crash(*_args, **_kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(atomic_files.os, "replace", crash)
        store._datastore.name = "changed in memory"
        with pytest.raises(OSError):
            store._update_datastore_file()
        assert index.read_text() == before  # whole, and still the previous one
        assert not [p for p in index.parent.iterdir() if p.name.endswith(".part")]  # no temporary left behind
    finally:
        observer = getattr(store, "_observer", None)  # MONAI Label watches the folder for outside changes
        if observer is not None:
            observer.stop()
