"""The people allowed to use the server, their roles and bcrypt password hashes, in one JSON file.

When a users file is configured (``--conf users_file PATH`` / ``MEDICOSAM_USERS_FILE``) authentication is on.
The file is edited by ``python -m medicosam_app users ...`` while the server may be reading it, so:

- every change is a read-modify-write under a file lock (``<file>.lock``): two commands started at once
  both land, neither overwrites the other's change;
- the new contents replace the old in one step (:mod:`medicosam_app.atomic_files`), so a reader never sees
  half a file, and the file is created mode 0600 (it holds password hashes);
- readers take no lock; they re-read the file when its (inode, size, mtime) changes, so a user added,
  removed or given a new password counts at once, without restarting the server.

Passwords are hashed with bcrypt (``bcrypt`` package, cost 12 by default). bcrypt only reads the first 72
bytes of a password; longer passwords are **refused** with a clear error rather than pre-hashed. A pre-hash
(e.g. HMAC-SHA256 then base64) would work, but it is a home-made construction whose hashes no other bcrypt
tool can check, and 72 bytes is a long passphrase (about 12 English words); refusing keeps the stored
hashes plain standard bcrypt and hides nothing from the user.

:meth:`UserStore.verify` spends the same bcrypt work whether or not the user exists (an unknown name is
checked against a dummy hash of the same cost), so user names cannot be probed by timing sign-ins.

Usage by the server (the wiring)::

    store = UserStore(settings.users_file)
    user = store.verify(form.username, form.password)   # User or None; one bcrypt check either way
    user = store.get(claims.subject)                    # per request: still there? current role?
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import bcrypt
from filelock import FileLock, Timeout

from ..atomic_files import make_folders_durably, write_json_atomic
from .accounts import (
    ALLOWED_USERNAME,
    MAX_PASSWORD_BYTES,
    MIN_PASSWORD_CHARS,
    USERNAME_PATTERN,
    InvalidPasswordError,
    InvalidRoleError,
    InvalidUsernameError,
    Role,
    UnknownUserError,
    User,
    UserError,
    UserExistsError,
    UsersFileError,
    check_password,
    check_username,
)

# The accounts' rules are part of this module's surface: callers import them from here with the store.
__all__ = ["ALLOWED_USERNAME", "MAX_PASSWORD_BYTES", "MIN_PASSWORD_CHARS", "USERNAME_PATTERN", "InvalidPasswordError",
           "InvalidRoleError", "InvalidUsernameError", "Role", "UnknownUserError", "User", "UserError",
           "UserExistsError", "UserStore", "UsersFileError", "check_password", "check_username"]

logger = logging.getLogger(__name__)

DEFAULT_BCRYPT_ROUNDS = 12  # ~0.5 s per hash on one core of these machines: paid once per sign-in
FILE_FORMAT_VERSION = 1
LOCK_TIMEOUT_S = 30.0


def _iso(epoch_seconds: float) -> str:
    """ISO-8601 UTC, whole seconds, with ``Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class UserStore:
    """Users in the JSON file ``path``: ``{"version": 1, "users": {name: {"role", "password_hash", ...}}}``.

    ``rounds`` is the bcrypt cost of new hashes (4 in tests, 12 in use). ``clock`` returns epoch seconds
    (``time.time``; tests move their own). The object is safe to share between threads, and any number of
    processes may use the same file.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        rounds: int = DEFAULT_BCRYPT_ROUNDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.rounds = rounds
        self.clock = clock
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S, mode=0o600)
        self._cache_guard = threading.Lock()
        self._cache: Optional[Tuple[Tuple[int, int, int], Dict[str, Dict[str, Any]]]] = None
        self._dummy_hashes: Dict[int, bytes] = {}
        self._warned_mode = False

    def __repr__(self) -> str:
        return f"UserStore({str(self.path)!r})"

    # ---- reading -----------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_file()

    def get(self, username: str) -> Optional[User]:
        """The user named ``username`` as the file says now, or None (also for a name that is not allowed)."""
        record = self._records().get(username) if isinstance(username, str) else None
        return None if record is None else self._user(username, record)

    def require(self, username: str) -> User:
        """The user named ``username``; :class:`UnknownUserError` (naming the users there are) otherwise."""
        return self._user(username, self._known(self._records(), username))

    def list(self) -> List[User]:
        """All users, sorted by name."""
        return [self._user(name, record) for name, record in sorted(self._records().items())]

    def verify(self, username: str, password: str) -> Optional[User]:
        """The user if ``password`` is theirs, else None. One bcrypt check of the same cost in every case."""
        record = self._records().get(username) if isinstance(username, str) else None
        candidate = password.encode("utf-8") if isinstance(password, str) else b""
        usable = record is not None and 0 < len(candidate) <= MAX_PASSWORD_BYTES
        # An unknown user or an impossible password still costs one bcrypt check, so timing tells nothing.
        stored = record["password_hash"].encode("ascii") if usable else self._dummy(self._records())
        matches = bcrypt.checkpw(candidate[:MAX_PASSWORD_BYTES], stored)
        return self._user(username, record) if usable and matches else None

    # ---- changing ----------------------------------------------------------------------------------------

    def add(self, username: str, password: str, role: Union[Role, str]) -> User:
        """Add a user; :class:`UserExistsError` if the name (in any letter case) is taken."""
        check_username(username)
        role = Role.parse(role)
        hashed = self._hash(password)
        with self._locked() as records:
            clash = next((name for name in records if name.lower() == username.lower()), None)
            if clash is not None:
                raise UserExistsError(
                    f"user {clash!r} already exists"
                    + ("" if clash == username else f" (names differ only in letter case from {username!r})")
                )
            now = self.clock()
            records[username] = {
                "role": role.label,
                "password_hash": hashed,
                "created": _iso(now),
                "password_changed": _iso(now),
                "tokens_valid_after": int(now),
            }
            return self._user(username, records[username])

    def remove(self, username: str) -> None:
        """Remove a user; their tokens stop working at once. :class:`UnknownUserError` if there is none."""
        with self._locked() as records:
            self._known(records, username)
            del records[username]

    def set_password(self, username: str, password: str) -> User:
        """Give a user a new password; tokens issued before now are refused from now on."""
        hashed = self._hash(password)
        with self._locked() as records:
            record = self._known(records, username)
            now = self.clock()
            record.update(password_hash=hashed, password_changed=_iso(now), tokens_valid_after=int(now))
            return self._user(username, record)

    def set_role(self, username: str, role: Union[Role, str]) -> User:
        """Change a user's role; tokens carry the old role, so callers should trust :meth:`get`, not the token."""
        role = Role.parse(role)
        with self._locked() as records:
            record = self._known(records, username)
            record["role"] = role.label
            return self._user(username, record)

    # ---- internals ---------------------------------------------------------------------------------------

    def _hash(self, password: str) -> str:
        return bcrypt.hashpw(check_password(password), bcrypt.gensalt(self.rounds)).decode("ascii")

    def _dummy(self, records: Dict[str, Dict[str, Any]]) -> bytes:
        """A hash nobody's password matches, of the cost the file's hashes have (``$2b$<cost>$...``), so
        checking it takes as long as checking a real user's."""
        costs = [int(record["password_hash"][4:6]) for record in records.values()]
        cost = max(costs) if costs else self.rounds
        if cost not in self._dummy_hashes:
            self._dummy_hashes[cost] = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost))
        return self._dummy_hashes[cost]

    @staticmethod
    def _known(records: Dict[str, Dict[str, Any]], username: str) -> Dict[str, Any]:
        if username not in records:
            names = ", ".join(sorted(records)) or "none"
            raise UnknownUserError(f"no user {username!r} (users: {names})")
        return records[username]

    @staticmethod
    def _user(username: str, record: Dict[str, Any]) -> User:
        return User(
            username=username,
            role=Role.parse(record["role"]),
            created=str(record.get("created", "")),
            password_changed=str(record.get("password_changed", "")),
            tokens_valid_after=int(record.get("tokens_valid_after", 0)),
        )

    def _records(self) -> Dict[str, Dict[str, Any]]:
        """The file's users (empty if there is no file), re-read only when the file changed."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return {}
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._cache_guard:
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        self._warn_if_readable_by_others(info)
        records = self._parse(self.path.read_bytes())
        with self._cache_guard:
            self._cache = (key, records)
        return records

    def _parse(self, data: bytes) -> Dict[str, Dict[str, Any]]:
        try:
            content = json.loads(data)
            users = content["users"]
            if content.get("version") != FILE_FORMAT_VERSION or not isinstance(users, dict):
                raise ValueError(f"version {content.get('version')!r}")
            for name, record in users.items():
                check_username(name)
                Role.parse(record["role"])
                if not re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", str(record["password_hash"])):
                    raise ValueError(f"user {name!r} has no bcrypt hash")
        except (ValueError, KeyError, TypeError, AttributeError, UserError) as error:
            raise UsersFileError(f"{self.path} is not a MedicoSAM users file ({error}); fix or remove it") from None
        return users

    def _warn_if_readable_by_others(self, info: os.stat_result) -> None:
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and not self._warned_mode:
            self._warned_mode = True
            logger.warning("%s holds password hashes but others may read it: chmod 600 %s", self.path, self.path)

    @contextmanager
    def _locked(self) -> Iterator[Dict[str, Dict[str, Any]]]:
        """``with store._locked() as records:`` change ``records``; written back atomically unless the body
        raises. Held across processes (a file lock), so concurrent commands apply one after the other."""
        make_folders_durably(self.path.parent)  # the lock file lives beside the users file
        try:
            self._lock.acquire()
        except Timeout:
            raise UsersFileError(
                f"{self.path} is locked by another process for over {LOCK_TIMEOUT_S:.0f} s; try again"
            ) from None
        try:
            # Read under the lock, not from the cache: another process may have written a moment ago.
            current = self._parse(self.path.read_bytes()) if self.path.exists() else {}
            records = {name: dict(record) for name, record in current.items()}
            yield records
            write_json_atomic(self.path, {"version": FILE_FORMAT_VERSION, "users": records})
        finally:
            self._lock.release()
