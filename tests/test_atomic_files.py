"""Writes that a crash cannot leave half done (medicosam_app.atomic_files)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medicosam_app import atomic_files
from medicosam_app.atomic_files import copy_file_atomic, make_folders_durably, write_bytes_atomic, write_json_atomic
from medicosam_app.errors import StorageFullError, is_storage_full


def test_json_replaces_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "index.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.json"]


def test_copy_names_its_temporary_with_the_prefix_and_keeps_the_bytes(tmp_path, monkeypatch):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 << 20))
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", spy)
    copy_file_atomic(source, tmp_path / "out" / "label.nii.gz", temporary_prefix=".saving_")
    assert (tmp_path / "out" / "label.nii.gz").read_bytes() == source.read_bytes()
    assert seen[0].startswith(".saving_") and seen[0].endswith(".part")


def test_file_and_folder_are_fsynced_before_the_write_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic_files.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    write_bytes_atomic(tmp_path / "new" / "x.json", b"{}")
    assert any(s.endswith(".part") for s in synced)  # the data, under its temporary name
    assert str(tmp_path / "new") in synced and str(tmp_path) in synced  # the rename, and the new folder


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"old": True})

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "replace", broken)
    try:
        write_json_atomic(path, {"new": True})
    except OSError:
        pass
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_make_folders_durably_is_idempotent(tmp_path):
    make_folders_durably(tmp_path / "a" / "b")
    make_folders_durably(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


WRITER = r"""
import sys
from medicosam_app.atomic_files import write_bytes_atomic
n = 0
while True:
    n += 1
    write_bytes_atomic(sys.argv[1], f"{n}\n{'x' * 200000}\n{n}".encode())
"""


def _whole(text: str) -> bool:
    first, body, last = text.split("\n")
    return first == last and body == "x" * 200000


def test_a_writer_killed_at_any_moment_leaves_a_whole_file(tmp_path):
    """SIGKILL a process that rewrites one file in a loop: every reader, and the file left behind, sees one
    complete version."""
    path = tmp_path / "value.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 20
        reads = 0
        while time.monotonic() < deadline and reads < 200:
            if path.exists():
                text = path.read_text()
                assert _whole(text)
                reads += 1
        assert reads > 0
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    text = path.read_text()
    assert _whole(text)


def test_restored_if_failed_brings_back_a_replaced_file(tmp_path):
    path = tmp_path / "label.nii.gz"
    path.write_bytes(b"previous")
    try:
        with atomic_files.restored_if_failed(path, ".saving_"):
            write_bytes_atomic(path, b"new")
            raise OSError(errno.ENOSPC, "No space left on device")  # as the index write after it would
    except OSError:
        pass
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label.nii.gz"]


def test_restored_if_failed_before_any_change_keeps_the_file_and_no_link(tmp_path):
    """A failure before the file is replaced: the kept link and the file are one inode (rename would do nothing)."""
    path = tmp_path / "label.nii.gz"
    path.write_bytes(b"previous")
    with pytest.raises(OSError):
        with atomic_files.restored_if_failed(path, ".saving_"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label.nii.gz"]


def test_restored_if_failed_removes_a_new_file_and_keeps_a_committed_one(tmp_path):
    new = tmp_path / "new.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_files.restored_if_failed(new):
            new.write_bytes(b"half of a save")
            raise RuntimeError("index write failed")
    assert not new.exists()
    with atomic_files.restored_if_failed(new):
        write_bytes_atomic(new, b"saved")
    assert new.read_bytes() == b"saved" and sorted(p.name for p in tmp_path.iterdir()) == ["new.nii.gz"]


def test_storage_full_as_names_what_was_not_saved_and_passes_other_errors(tmp_path):
    with pytest.raises(StorageFullError, match=r"Label 'final' of image 'knee' was not saved: the disk holding"):
        with atomic_files.storage_full_as("Label 'final' of image 'knee' was not saved", tmp_path / "x"):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    with pytest.raises(PermissionError):
        with atomic_files.storage_full_as("Label was not saved", tmp_path / "x"):
            raise PermissionError(errno.EACCES, "Permission denied")
    assert is_storage_full(RuntimeError("plain")) is False
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as error:
            raise RuntimeError("torch could not write") from error
    except RuntimeError as wrapped:
        assert is_storage_full(wrapped)
