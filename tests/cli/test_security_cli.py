"""``python -m medicosam_app users ...``, ``audit`` and ``permissions`` as an administrator runs them: real
processes, passwords on standard input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from medicosam_app.security.audit import AuditLog
from medicosam_app.security.permissions import markdown_table
from medicosam_app.security.users import Role, UserStore

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: Optional[str] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MEDICOSAM_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "medicosam_app", *args], cwd=REPO, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=120, env=environment)


def one_error_line(result: subprocess.CompletedProcess, starts: str) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    return lines[0]


def test_add_list_passwd_remove(tmp_path):
    users = tmp_path / "conf" / "users.json"
    flag = ["--users-file", str(users)]
    added = run("users", "add", "alice", "--role", "reviewer", *flag, stdin="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"Added alice (reviewer) to {users}."
    assert os.stat(users).st_mode & 0o777 == 0o600
    assert UserStore(users).verify("alice", "correct horse").role is Role.REVIEWER  # the newline is not part of it

    # The environment variable names the file as well as the flag.
    env = {"MEDICOSAM_USERS_FILE": str(users)}
    assert run("users", "add", "bob", "--role", "admin", stdin="battery staple", env=env).returncode == 0
    listing = run("users", "list", env=env)
    assert listing.returncode == 0
    assert [line.split()[:2] for line in listing.stdout.splitlines()] == [["alice", "reviewer"], ["bob", "admin"]]
    as_json = json.loads(run("users", "list", "--json", *flag).stdout)
    assert [(u["username"], u["role"]) for u in as_json] == [("alice", "reviewer"), ("bob", "admin")]
    assert "password_hash" not in json.dumps(as_json)

    changed = run("users", "passwd", "alice", *flag, stdin="new password\r\n")
    assert changed.returncode == 0, changed.stderr
    assert UserStore(users).verify("alice", "correct horse") is None
    assert UserStore(users).verify("alice", "new password") is not None

    removed = run("users", "remove", "bob", *flag)
    assert removed.returncode == 0 and removed.stdout.strip() == f"Removed bob from {users}."
    assert [u.username for u in UserStore(users).list()] == ["alice"]


def test_refusals_exit_2_with_one_line(tmp_path):
    users = tmp_path / "users.json"
    flag = ["--users-file", str(users)]
    assert run("users", "add", "alice", "--role", "annotator", *flag, stdin="password1\n").returncode == 0
    before = users.read_bytes()

    one_error_line(run("users", "add", "alice", "--role", "admin", *flag, stdin="password2\n"),
                   "users add: user 'alice' already exists")
    one_error_line(run("users", "add", "ALICE", "--role", "admin", *flag, stdin="password2\n"),
                   "users add: user 'alice' already exists")
    one_error_line(run("users", "remove", "carol", *flag), "users remove: no user 'carol' (users: alice)")
    one_error_line(run("users", "passwd", "carol", *flag, stdin="password2\n"), "users passwd: no user 'carol'")
    one_error_line(run("users", "add", ".carol", "--role", "admin", *flag, stdin="password2\n"),
                   "users add: user name '.carol' is not allowed")
    one_error_line(run("users", "add", "carol", "--role", "admin", *flag, stdin="short\n"),
                   "users add: the password is too short")
    one_error_line(run("users", "add", "carol", "--role", "admin", *flag, stdin="x" * 73 + "\n"),
                   "users add: the password is 73 bytes long")
    one_error_line(run("users", "add", "carol", "--role", "admin", *flag, stdin=""),
                   "users add: no password on standard input")
    one_error_line(run("users", "list"), "users list: no users file: pass --users-file PATH or set MEDICOSAM_USERS_FILE")
    assert users.read_bytes() == before  # nothing changed

    bad_role = run("users", "add", "carol", "--role", "owner", *flag, stdin="password2\n")
    assert bad_role.returncode == 2 and "invalid choice: 'owner'" in bad_role.stderr  # argparse's usage error


def test_set_role(tmp_path):
    users = tmp_path / "users.json"
    flag = ["--users-file", str(users)]
    assert run("users", "add", "alice", "--role", "annotator", *flag, stdin="password1\n").returncode == 0

    changed = run("users", "set-role", "alice", "reviewer", *flag)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == f"alice is now reviewer in {users}."
    assert UserStore(users).require("alice").role is Role.REVIEWER
    assert UserStore(users).verify("alice", "password1") is not None  # the password stays
    assert run("users", "set-role", "alice", "ADMIN", *flag).returncode == 0  # roles in any letter case
    assert UserStore(users).require("alice").role is Role.ADMIN

    before = users.read_bytes()
    one_error_line(run("users", "set-role", "alice", "owner", *flag),
                   "users set-role: unknown role 'owner': use one of annotator, reviewer, admin")
    one_error_line(run("users", "set-role", "carol", "reviewer", *flag), "users set-role: no user 'carol' (users: alice)")
    assert users.read_bytes() == before  # nothing changed
    assert UserStore(users).require("alice").role is Role.ADMIN


def test_empty_users_file_list(tmp_path):
    result = run("users", "list", "--users-file", str(tmp_path / "users.json"))
    assert result.returncode == 0 and result.stdout.strip() == f"No users in {tmp_path / 'users.json'}."


def test_audit_command(tmp_path):
    audit_dir = tmp_path / "audit"
    log = AuditLog(audit_dir, max_bytes=400)
    log.append({"time": "2020-01-01T00:00:00Z", "event": "infer", "user": "alice", "role": "annotator",
                "endpoint": "POST /infer/medicosam_interactive", "image": "ct_1", "status": 200, "latency_s": 0.5})
    log.append({"event": "label_save", "user": "bob", "role": "annotator", "endpoint": "PUT /datastore/label",
                "image": "ct_2", "status": 200})
    log.append({"event": "refused", "user": "alice", "role": "annotator", "endpoint": "POST /train/x",
                "status": 403, "detail": "needs admin"})
    with open(log.current, "ab") as f:
        f.write(b"garbage\n")

    as_json = run("audit", "--audit-dir", str(audit_dir), "--user", "alice", "--json")
    assert as_json.returncode == 0
    assert [json.loads(line)["event"] for line in as_json.stdout.splitlines()] == ["infer", "refused"]
    assert as_json.stderr.strip() == "audit: skipped 1 damaged line(s)"

    table = run("audit", "--image", "ct_1", env={"MEDICOSAM_AUDIT_DIR": str(audit_dir)})
    assert table.returncode == 0
    [line] = table.stdout.splitlines()
    assert line.startswith("2020-01-01T00:00:00Z  alice") and "image=ct_1" in line and "0.500s" in line

    recent = run("audit", "--audit-dir", str(audit_dir), "--since", "2021-01-01")
    assert [line.split()[3] for line in recent.stdout.splitlines()] == ["label_save", "refused"]
    assert "needs admin" in recent.stdout

    # The default folder is <cache_dir>/audit.
    cached = run("audit", "--cache-dir", str(tmp_path), "--event", "label_save", "--json")
    assert [json.loads(line)["user"] for line in cached.stdout.splitlines()] == ["bob"]

    none = run("audit", "--audit-dir", str(tmp_path / "empty"))
    assert none.returncode == 0 and none.stdout.startswith("No audit records match")
    one_error_line(run("audit", "--audit-dir", str(audit_dir), "--since", "last week"), "audit: cannot read the time")


def test_permissions_command_prints_the_table():
    result = run("permissions")
    assert result.returncode == 0 and result.stdout == markdown_table()
