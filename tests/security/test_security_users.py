"""medicosam_app.security.users: the users file, bcrypt hashes, roles, locking between processes."""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medicosam_app.security.users import (
    MAX_PASSWORD_BYTES,
    InvalidPasswordError,
    InvalidRoleError,
    InvalidUsernameError,
    Role,
    UnknownUserError,
    UserExistsError,
    UsersFileError,
    UserStore,
)

REPO = Path(__file__).resolve().parents[2]
FAST = 4  # bcrypt cost in tests (the minimum); 12 in use


@pytest.fixture()
def store(tmp_path) -> UserStore:
    return UserStore(tmp_path / "conf" / "users.json", rounds=FAST)


def test_roles_are_ordered_and_parsed():
    assert Role.ANNOTATOR < Role.REVIEWER < Role.ADMIN
    assert Role.parse("Reviewer") is Role.REVIEWER and Role.parse(Role.ADMIN) is Role.ADMIN
    assert [role.label for role in Role] == ["annotator", "reviewer", "admin"]
    with pytest.raises(InvalidRoleError, match="annotator, reviewer, admin"):
        Role.parse("user")


def test_add_then_verify_get_and_list(store):
    added = store.add("jane.doe", "correct horse", "reviewer")
    assert added.username == "jane.doe" and added.role is Role.REVIEWER
    store.add("bob", "battery staple", Role.ANNOTATOR)
    assert store.verify("jane.doe", "correct horse") == store.get("jane.doe") == added
    assert store.verify("jane.doe", "wrong horse") is None
    assert store.verify("nobody", "correct horse") is None
    assert store.verify("jane.doe", "") is None
    assert [user.username for user in store.list()] == ["bob", "jane.doe"]
    assert store.require("bob").role is Role.ANNOTATOR


def test_file_is_private_json_without_the_password(store):
    store.add("alice", "a long secret", "admin")
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    text = store.path.read_text()
    assert "a long secret" not in text
    content = json.loads(text)
    assert content["version"] == 1
    assert content["users"]["alice"]["role"] == "admin"
    assert content["users"]["alice"]["password_hash"].startswith("$2b$04$")
    assert not [name for name in os.listdir(store.path.parent) if name.endswith(".part")]  # no temporary left


def test_taken_names_unknown_names_and_case(store):
    store.add("alice", "password1", "annotator")
    with pytest.raises(UserExistsError, match="'alice' already exists"):
        store.add("alice", "password2", "admin")
    with pytest.raises(UserExistsError, match="letter case"):
        store.add("Alice", "password2", "admin")
    with pytest.raises(UnknownUserError, match="no user 'carol' \\(users: alice\\)"):
        store.remove("carol")
    with pytest.raises(UnknownUserError):
        store.set_password("carol", "password3")
    with pytest.raises(UnknownUserError):
        store.require("carol")
    assert store.verify("alice", "password1") is not None  # failed changes left the file as it was


@pytest.mark.parametrize("name", ["", "-bob", ".hidden", "_x", "a/b", "a b", "a\nb", "x" * 65, "jürgen", "a:b", None])
def test_bad_usernames_are_refused(store, name):
    with pytest.raises(InvalidUsernameError, match="letters, digits"):
        store.add(name, "password1", "annotator")
    assert not store.exists()


@pytest.mark.parametrize("name", ["a", "jane.doe", "A_1-b", "x" * 64, "42"])
def test_good_usernames(store, name):
    assert store.add(name, "password1", "annotator").username == name


def test_password_rules(store):
    with pytest.raises(InvalidPasswordError, match="at least 8"):
        store.add("alice", "short", "admin")
    too_long = "é" * 37  # 37 characters, 74 bytes in UTF-8: past bcrypt's 72
    with pytest.raises(InvalidPasswordError, match="74 bytes long in UTF-8; bcrypt uses at most 72"):
        store.add("alice", too_long, "admin")
    exactly = "p" * MAX_PASSWORD_BYTES
    store.add("alice", exactly, "admin")
    assert store.verify("alice", exactly) is not None
    assert store.verify("alice", exactly + "x") is None  # bcrypt would have ignored the 73rd byte; we don't
    assert store.verify("alice", exactly[:-1]) is None


def test_new_password_replaces_the_old_and_moves_token_cutoff(tmp_path):
    now = [1_700_000_000.0]
    store = UserStore(tmp_path / "users.json", rounds=FAST, clock=lambda: now[0])
    first = store.add("alice", "password1", "annotator")
    assert first.created == "2023-11-14T22:13:20Z" and first.tokens_valid_after == 1_700_000_000
    now[0] += 60
    changed = store.set_password("alice", "password2")
    assert store.verify("alice", "password1") is None
    assert store.verify("alice", "password2") == changed
    assert changed.tokens_valid_after == first.tokens_valid_after + 60
    assert changed.created == first.created and changed.password_changed == "2023-11-14T22:14:20Z"


def test_role_change_and_removal(store):
    store.add("alice", "password1", "annotator")
    assert store.set_role("alice", "admin").role is Role.ADMIN
    assert store.get("alice").role is Role.ADMIN
    store.remove("alice")
    assert store.get("alice") is None and store.verify("alice", "password1") is None
    assert store.list() == []


def test_another_store_on_the_same_file_sees_changes_at_once(store):
    other = UserStore(store.path, rounds=FAST)
    assert other.get("alice") is None  # no file yet
    store.add("alice", "password1", "annotator")
    assert other.get("alice").role is Role.ANNOTATOR  # cached "no file" is not kept
    other.set_role("alice", "reviewer")
    assert store.get("alice").role is Role.REVIEWER
    other.remove("alice")
    assert store.get("alice") is None


def test_concurrent_processes_never_lose_a_change(tmp_path):
    path = tmp_path / "users.json"
    code = (
        "import sys; from medicosam_app.security.users import UserStore; "
        f"UserStore(sys.argv[1], rounds={FAST}).add(sys.argv[2], 'password1', 'annotator')"
    )
    names = [f"user{i}" for i in range(8)]
    processes = [subprocess.Popen([sys.executable, "-c", code, str(path), name], cwd=REPO) for name in names]
    assert [process.wait(timeout=120) for process in processes] == [0] * len(names)
    assert [user.username for user in UserStore(path).list()] == sorted(names)


def test_unknown_users_cost_as_much_as_wrong_passwords(tmp_path):
    """Timing a sign-in must not tell whether the name exists: both run one bcrypt check of the same cost."""
    UserStore(tmp_path / "users.json", rounds=9).add("alice", "password1", "annotator")  # ~70 ms a check
    # A server whose own cost setting differs from the file's: the dummy follows the file's hashes.
    store = UserStore(tmp_path / "users.json", rounds=FAST)
    store.verify("ghost", "password1")  # the dummy hash is made on first use; not part of the comparison

    def median_seconds(username: str) -> float:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            assert store.verify(username, "wrong-password") is None
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    known, unknown = median_seconds("alice"), median_seconds("ghost")
    assert 0.5 < unknown / known < 2.0, (known, unknown)
    assert unknown > 0.01  # a real bcrypt check ran


def test_damaged_file_is_reported_not_guessed(store):
    store.path.parent.mkdir(parents=True)
    for content in ("not json", "[]", '{"version": 1, "users": {"bad name": {}}}',
                    '{"version": 2, "users": {}}',
                    '{"version": 1, "users": {"alice": {"role": "admin", "password_hash": "plain"}}}'):
        store.path.write_text(content)
        with pytest.raises(UsersFileError, match="not a MedicoSAM users file"):
            store.get("alice")
        with pytest.raises(UsersFileError):
            store.add("bob", "password1", "annotator")
        assert store.path.read_text() == content  # never overwritten


def test_readable_by_others_warns(store, caplog):
    store.add("alice", "password1", "annotator")
    os.chmod(store.path, 0o644)
    fresh = UserStore(store.path, rounds=FAST)
    with caplog.at_level(logging.WARNING, logger="medicosam_app.security.users"):
        fresh.get("alice")
    assert "chmod 600" in caplog.text
