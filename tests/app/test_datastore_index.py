"""The folder datastore's index as read from disk: names in it that leave the folder are dropped, never looked at."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from conftest import write_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps" / "medicosam"))
from lib.datastore import CheckedLocalDatastore  # noqa: E402
from lib.datastore.index import read_index, reconcile_index  # noqa: E402


def test_an_index_entry_whose_name_leaves_the_folder_is_dropped(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    write_volume(folder / "knee.nii.gz", np.zeros((6, 5, 4), np.float32))
    write_volume(tmp_path / "outside.nii.gz", np.zeros((6, 5, 4), np.float32))  # exists, beside the folder
    store = CheckedLocalDatastore(str(folder))
    index = json.loads((folder / "datastore_v2.json").read_text())
    knee = index["objects"]["knee"]
    index["objects"]["../outside"] = {"image": dict(knee["image"], info={"name": "../outside.nii.gz"}), "labels": {}}
    index["objects"]["knee"]["labels"]["../../final"] = {"ext": ".nii.gz", "info": {}}
    (folder / "datastore_v2.json").write_text(json.dumps(index))  # as a hand edit would leave it
    model = read_index(store)
    assert reconcile_index(store, model) == 2
    assert set(model.objects) == {"knee"} and model.objects["knee"].labels == {}
    assert (tmp_path / "outside.nii.gz").exists()  # only the entry went
