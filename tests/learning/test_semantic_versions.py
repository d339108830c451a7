"""Versions of the semantic decoder: atomic creation, the serving pointer, promotion and rollback."""

from __future__ import annotations

import pytest
import torch

from conftest import small_filesystem
from medicosam_app.errors import InvalidRequestError, StorageFullError
from medicosam_app.learning.versions import TrainingBusyError, VersionStore


def _state(value: float):
    return {"w": torch.full((2,), value)}


def test_versions_are_numbered_and_only_promotion_changes_what_is_served(tmp_path):
    store = VersionStore(tmp_path)
    assert store.serving() is None and store.ids() == []
    v1 = store.add(_state(1), {"metrics": {"val_dice": 0.5}})
    assert v1 == "v0001" and store.serving() is None
    store.promote(v1, "first")
    v2 = store.add(_state(2), {"metrics": {"val_dice": 0.4}})
    assert store.serving() == v1  # stored, not promoted
    assert [m["serving"] for m in store.list()] == [True, False]
    assert torch.equal(store.load_state(v2)["w"], torch.full((2,), 2.0))
    assert store.metadata(v2)["version"] == "v0002"


def test_rollback_restores_the_previously_served_version(tmp_path):
    store = VersionStore(tmp_path)
    for value in (1, 2, 3):
        store.promote(store.add(_state(value), {}), "better")
    assert store.serving() == "v0003"
    assert store.rollback() == "v0002" and store.serving() == "v0002"
    assert store.rollback() == "v0001"
    with pytest.raises(InvalidRequestError, match="Nothing to roll back"):
        store.rollback()
    store.promote("v0003", "admin")
    assert store.serving() == "v0003"


def test_a_crashed_run_leaves_no_version_and_the_pointer_untouched(tmp_path):
    store = VersionStore(tmp_path)
    store.promote(store.add(_state(1), {}), "first")
    (store.versions_dir / ".v0002.abc").mkdir()  # what a run killed while writing leaves behind
    (store.versions_dir / ".v0002.abc" / "decoder.pt").write_bytes(b"half a file")
    assert store.ids() == ["v0001"] and store.serving() == "v0001"
    assert store.add(_state(2), {}) == "v0002"


def test_version_ids_from_outside_cannot_name_other_paths(tmp_path):
    store = VersionStore(tmp_path)
    for bad in ("../serving", "v1/../../x", "/etc/passwd", "latest"):
        with pytest.raises(InvalidRequestError):
            store.metadata(bad)
    with pytest.raises(InvalidRequestError, match="No semantic model version"):
        store.promote("v0042", "nope")


def test_one_training_run_at_a_time(tmp_path):
    store = VersionStore(tmp_path)
    held = store.acquire_training_lock()
    try:
        with pytest.raises(TrainingBusyError):
            VersionStore(tmp_path).acquire_training_lock()
    finally:
        held.release()
    VersionStore(tmp_path).acquire_training_lock().release()


def test_a_semantic_version_serves_whatever_precision_its_checkpoint_is_embedded_in():
    """A new precision choice (precision auto picking int8 after an upgrade) must not retire trained decoders."""
    from medicosam_app.learning.versions import trained_on_checkpoint

    assert trained_on_checkpoint({"encoder_checkpoint": "abc", "encoder_key": "abc-fp32"}, "abc")
    assert trained_on_checkpoint({"encoder_key": "abc-bf16"}, "abc")  # written before encoder_checkpoint was
    assert not trained_on_checkpoint({"encoder_checkpoint": "other", "encoder_key": "other-fp32"}, "abc")
    assert not trained_on_checkpoint({}, "abc")


def test_a_full_disk_stores_no_version_and_keeps_serving_the_last(tmp_path):
    """The kernel's own ENOSPC on a 1 MiB tmpfs: the round's decoder (2 MiB) does not fit."""
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        store = VersionStore(disk)
        store.promote(store.add(_state(1), {}), "first")
        with pytest.raises(StorageFullError, match=r"not stored as v0002: the disk holding .* is full .* train again"):
            store.add({"w": torch.zeros(512, 1024)}, {})
        assert store.ids() == ["v0001"] and store.serving() == "v0001"
        assert [p.name for p in store.versions_dir.iterdir()] == ["v0001"]  # no half-written staging folder
        assert torch.equal(store.load_state("v0001")["w"], torch.full((2,), 1.0))
        assert store.add(_state(3), {}) == "v0002"  # small enough: the store works on
