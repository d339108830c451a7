"""What an account is: a user name of allowed characters, a password bcrypt can hash whole, and one of three
roles; and the errors a users-file operation raises, each saying what to do."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Dict, Union


from ..errors import MedicoSamError


USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALLOWED_USERNAME = (
    "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. 'jane.doe')"
)
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 72  # bcrypt ignores everything after the 72nd byte; bcrypt 5 refuses longer ones


class Role(enum.IntEnum):
    """What a user may do; each role may do everything the roles below it may (``Role.ADMIN > Role.REVIEWER``).

    annotator: info, inference, saving labels, next sample, own sessions.
    reviewer: + scoring, other users' labels, approving labels.
    admin: + training, promote/rollback, image upload, deletion, dataset download, users.
    """

    ANNOTATOR = 1
    REVIEWER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The lower-case name used in files, tokens, the CLI and the audit trail."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: Union[str, "Role"]) -> "Role":
        """``Role`` from its name (``"annotator"``, ``"REVIEWER"`` ...); :class:`InvalidRoleError` otherwise."""
        if isinstance(value, Role):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise InvalidRoleError(
                f"unknown role {value!r}: use one of {', '.join(role.label for role in cls)}"
            ) from None

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class User:
    """A user as the server needs it; the password hash never leaves :class:`UserStore`."""

    username: str
    role: Role
    created: str  # ISO-8601 UTC
    password_changed: str  # ISO-8601 UTC
    tokens_valid_after: int  # epoch seconds: tokens issued (``iat``) earlier than this are refused

    def to_dict(self) -> Dict[str, Any]:
        return {
            "username": self.username,
            "role": self.role.label,
            "created": self.created,
            "password_changed": self.password_changed,
        }


class UserError(MedicoSamError):
    """A users-file operation that cannot be done as asked; the message says why and what to do."""


class InvalidUsernameError(UserError):
    pass


class InvalidPasswordError(UserError):
    pass


class InvalidRoleError(UserError):
    pass


class UserExistsError(UserError):
    pass


class UnknownUserError(UserError):
    pass


class UsersFileError(UserError):
    """The users file cannot be read, is not ours, or is locked by a stuck process."""


def check_username(username: Any) -> str:
    """``username`` if it is allowed; :class:`InvalidUsernameError` otherwise."""
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise InvalidUsernameError(f"user name {username!r} is not allowed: use {ALLOWED_USERNAME}")
    return username


def check_password(password: Any) -> bytes:
    """The UTF-8 bytes of an acceptable new password; :class:`InvalidPasswordError` otherwise."""
    if not isinstance(password, str):
        raise InvalidPasswordError("the password must be text")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidPasswordError(f"the password is too short: use at least {MIN_PASSWORD_CHARS} characters")
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise InvalidPasswordError(
            f"the password is {len(encoded)} bytes long in UTF-8; bcrypt uses at most {MAX_PASSWORD_BYTES}: "
            "choose a shorter one (about 70 ASCII characters, fewer with accents or non-Latin letters)"
        )
    return encoded
