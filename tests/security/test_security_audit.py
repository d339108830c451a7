"""medicosam_app.security.audit: append-only JSON Lines, rotation that never loses or rewrites a line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from medicosam_app.security.audit import AuditLog, parse_time
from medicosam_app.api import ClickRequest
from medicosam_app.security.audit_record import AuditRecord, label_summary

REPO = Path(__file__).resolve().parents[2]


def all_lines(log: AuditLog) -> List[bytes]:
    return [line for path in log.files() for line in path.read_bytes().splitlines()]


def test_append_adds_time_first_and_keeps_a_given_one(tmp_path):
    log = AuditLog(tmp_path / "audit")
    written = log.append({"event": "sign_in", "user": "alice", "status": 200})
    assert list(written)[0] == "time" and written["time"].endswith("Z")
    stamped = datetime.fromisoformat(written["time"].replace("Z", "+00:00"))
    assert abs(stamped - datetime.now(timezone.utc)) < timedelta(seconds=5)
    log.append({"time": "2024-01-01T00:00:00Z", "event": "infer", "status": 200})
    lines = (tmp_path / "audit" / "audit.jsonl").read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [written, {"time": "2024-01-01T00:00:00Z", "event": "infer", "status": 200}]
    assert os.stat(tmp_path / "audit" / "audit.jsonl").st_mode & 0o777 == 0o600


def test_record_fields_and_helpers(tmp_path):
    label = np.zeros((8, 9, 10), np.uint8)
    label[2:4, 3:5, 6:8] = 1
    params = {"image": "ct_1", "foreground": [[2, 3, 6]], "background": [], "roi": [5, 1, 2, 6, 6, 6], "slice": 6,
              "axis": 2, "label": "liver", "client_id": "slicer-1", "result_extension": ".nrrd"}
    record = AuditRecord(
        event="infer", endpoint="POST /infer/medicosam_interactive", status=200, user="alice", role="annotator",
        task="medicosam_interactive", image="ct_1", prompts=ClickRequest.read(params).audit_summary(),
        model={"checkpoint_xxh128": "40169f1e3c03a4b67bff58249c176d92", "semantic_version": None},
        result=label_summary(label, axis=2), latency_s=0.25,
    )
    written = AuditLog(tmp_path).append(record)
    assert written["prompts"] == {"foreground": [[2, 3, 6]], "box": [1, 5, 2, 6, 6, 6], "slice": 6, "axis": 2,
                                  "label": "liver"}
    assert written["result"]["voxels"] == 8 and written["result"]["slice_range"] == [6, 7]
    assert len(written["result"]["label_hash"]) == 32
    assert "detail" not in written and written["latency_s"] == 0.25
    assert next(iter(AuditLog(tmp_path).query())) == written


def test_label_summary_hash_sees_values_shape_and_empty_labels():
    label = np.zeros((4, 4, 4), np.uint8)
    empty = label_summary(label)
    assert empty["voxels"] == 0 and empty["slice_range"] is None
    label[1, 1, 1] = 1
    one = label_summary(label)
    assert one["label_hash"] != empty["label_hash"] and one["slice_range"] == [1, 1]
    assert label_summary(label.copy())["label_hash"] == one["label_hash"]
    assert label_summary(label.reshape(2, 8, 4))["label_hash"] != one["label_hash"]
    assert label_summary(label.astype(np.uint16))["label_hash"] != one["label_hash"]
    assert label_summary(label, axis=0)["slice_range"] == [1, 1]


def test_numpy_values_and_odd_text_stay_one_line(tmp_path):
    log = AuditLog(tmp_path)
    log.append({"event": "infer", "detail": "two\nlines and a quote \" and é", "n": np.int64(3),
                "points": np.array([[1, 2, 3]]), "status": 200})
    [line] = all_lines(log)
    record = json.loads(line)
    assert record["detail"] == "two\nlines and a quote \" and é" and record["n"] == 3 and record["points"] == [[1, 2, 3]]


def test_rotation_never_loses_or_rewrites_a_line(tmp_path):
    log = AuditLog(tmp_path, max_bytes=2000)
    seen: Dict[Path, bytes] = {}
    expected = []
    for i in range(300):
        expected.append(log.append({"event": "infer", "i": i, "status": 200, "user": f"u{i % 3}"}))
        for path in log.rotated_files():
            content = path.read_bytes()
            assert seen.setdefault(path, content) == content, f"{path.name} changed after rotation"
    rotated = log.rotated_files()
    assert len(rotated) >= 10
    assert all(path.stat().st_size <= 2000 for path in log.files())
    assert [json.loads(line) for line in all_lines(log)] == expected  # every line, once, in order
    assert list(log.query()) == expected


def test_four_threads_fifty_records_each(tmp_path):
    log = AuditLog(tmp_path, max_bytes=4000)  # rotates many times while the threads write

    def writer(thread: int) -> None:
        for i in range(50):
            log.append({"event": "infer", "thread": thread, "i": i, "status": 200})

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    query = log.query()
    records = list(query)
    assert query.skipped == 0 and len(records) == 200
    for t in range(4):  # each thread's records all there, in the order it wrote them
        assert [r["i"] for r in records if r["thread"] == t] == list(range(50))
    assert len(log.rotated_files()) >= 3


def test_processes_appending_and_rotating_at_once(tmp_path):
    code = (
        "import sys; from medicosam_app.security.audit import AuditLog; "
        "log = AuditLog(sys.argv[1], max_bytes=3000); "
        "[log.append({'event': 'infer', 'process': int(sys.argv[2]), 'i': i, 'status': 200}) for i in range(100)]"
    )
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(p)], cwd=REPO) for p in range(3)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    log = AuditLog(tmp_path)
    query = log.query()
    records = list(query)
    assert query.skipped == 0
    for p in range(3):
        assert [r["i"] for r in records if r["process"] == p] == list(range(100))
    assert all(line.startswith(b"{") for line in all_lines(log))


def test_keep_files_deletes_only_the_oldest_rotated(tmp_path):
    log = AuditLog(tmp_path, max_bytes=500, keep_files=2)
    for i in range(100):
        log.append({"event": "infer", "i": i})
    assert len(log.rotated_files()) == 2
    numbers = [record["i"] for record in log.query()]
    assert numbers == list(range(numbers[0], 100))  # the newest, contiguous


def test_damaged_lines_are_skipped_and_counted(tmp_path, caplog):
    log = AuditLog(tmp_path, max_bytes=10**6)
    log.append({"event": "infer", "i": 0})
    with open(log.current, "ab") as f:
        f.write(b"not json\n[1, 2]\n\n")
        f.write(b'{"event": "infer", "i": ')  # a writer killed in mid-line
    log.append({"event": "infer", "i": 1})  # lands on a line of its own
    query = log.query()
    assert [record["i"] for record in query] == [0, 1]
    assert query.skipped == 3
    assert "skipped 3 damaged line(s)" in caplog.text


def test_unfinished_last_line_is_not_a_record_yet(tmp_path):
    log = AuditLog(tmp_path)
    log.append({"event": "infer", "i": 0})
    with open(log.current, "ab") as f:
        f.write(b'{"event": "infer", "i": 1')  # another process is writing it right now
    query = log.query()
    assert [record["i"] for record in query] == [0] and query.skipped == 0


def test_query_filters(tmp_path):
    log = AuditLog(tmp_path, max_bytes=300)  # the records span files
    now = datetime.now(timezone.utc)
    for days, user, image, event in [(10, "alice", "ct_1", "infer"), (3, "bob", "ct_1", "label_save"),
                                     (2, "alice", "ct_2", "infer"), (0, "alice", "ct_1", "refused")]:
        when = (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")
        log.append({"time": when, "event": event, "user": user, "image": image, "status": 200})
    log.append({"event": "infer", "status": 200})  # no user, no image, time now
    assert len(log.rotated_files()) >= 1

    def users_and_images(**filters) -> List[tuple]:
        return [(r.get("user"), r.get("image")) for r in log.query(**filters)]

    assert users_and_images(user="alice") == [("alice", "ct_1"), ("alice", "ct_2"), ("alice", "ct_1")]
    assert users_and_images(image="ct_1") == [("alice", "ct_1"), ("bob", "ct_1"), ("alice", "ct_1")]
    assert users_and_images(user="alice", image="ct_1") == [("alice", "ct_1"), ("alice", "ct_1")]
    assert users_and_images(since="4d") == [("bob", "ct_1"), ("alice", "ct_2"), ("alice", "ct_1"), (None, None)]
    assert users_and_images(since=now - timedelta(days=2, hours=1), user="alice") == [("alice", "ct_2"), ("alice", "ct_1")]
    since_text = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert users_and_images(since=since_text) == [("alice", "ct_1"), (None, None)]
    assert users_and_images(event="label_save") == [("bob", "ct_1")]
    assert users_and_images(user="carol") == []


def test_query_of_a_missing_folder_is_empty(tmp_path):
    log = AuditLog(tmp_path / "nothing-yet")
    assert list(log.query()) == [] and log.files() == []
    assert not (tmp_path / "nothing-yet").exists()  # reading creates nothing


def test_parse_time_forms():
    now = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2025-03-01T13:00Z") == datetime(2025, 3, 1, 13, 0, tzinfo=timezone.utc)
    assert parse_time("2025-03-01T13:00:00+01:00") == datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2025-03-01") == datetime(2025, 3, 1).astimezone()  # local midnight
    assert parse_time("30m", now=now) == now - timedelta(minutes=30)
    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time(datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)) == now
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError):
        AuditLog(tmp_path, max_bytes=0)
    with pytest.raises(ValueError):
        AuditLog(tmp_path, keep_files=-1)


def test_fsync_mode_writes_the_same(tmp_path):
    log = AuditLog(tmp_path, fsync=True)
    log.append({"event": "promote", "status": "ok"})
    assert [r["event"] for r in log.query()] == ["promote"]
