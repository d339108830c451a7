"""Signed, expiring bearer tokens for MONAI Label's own sign-in protocol (REFERENCE §9).

The Slicer module signs in with ``POST /auth/token`` (form ``username``, ``password``) and then sends
``Authorization: <token_type> <access_token>`` on every call. Here the token is a JWT signed with HS256
under a secret that only this server knows, with the claims ``sub`` (user name), ``role``, ``iat``,
``exp`` and ``jti`` (a random id, so two tokens are never equal and an audit line can name one).

The secret is 64 random bytes, created once beside the users file (:func:`secret_file_for`), mode 0600,
by an atomic create-if-absent (two processes starting at once agree on one secret), and never logged or
shown in a ``repr``. Deleting it signs everybody out.

Usage by the server (the wiring)::

    issuer = TokenIssuer(secret_file_for(settings.users_file))
    # POST /auth/token
    user = store.verify(username, password)          # None → 401
    return issuer.token_response(issuer.issue(user))
    # every protected request
    token = token_from_authorization(request.headers.get("authorization"))  # None → 401
    user = issuer.authenticate(token, store)         # TokenError (.status 401, .reason) → 401
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import jwt

from ..atomic_files import fsync_directory, make_folders_durably
from ..errors import MedicoSamError
from .users import InvalidRoleError, Role, User, UserStore

logger = logging.getLogger(__name__)

DEFAULT_LIFETIME_S = 8 * 3600  # one working day: a token outlives a session in Slicer, not a night
ALGORITHM = "HS256"
TOKEN_TYPE = "bearer"
SECRET_BYTES = 64
_CLOCK_SKEW_S = 30  # a token "issued" this far in the future still counts (clocks of processes differ)
_REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "jti")


class TokenError(MedicoSamError):
    """A request's token cannot be accepted. ``status`` is 401; ``reason`` is a short code for the audit
    trail (``expired``, ``invalid``, ``revoked``, ``missing``); the message says what to do."""

    status = 401
    reason = "invalid"


class InvalidTokenError(TokenError):
    """Not a token this server signed: malformed, wrong signature, claims missing or wrong."""


class ExpiredTokenError(TokenError):
    """A genuine token past its ``exp``: sign in again."""

    reason = "expired"


class RevokedTokenError(TokenError):
    """A genuine, unexpired token of a user who was removed or whose password changed after it was issued."""

    reason = "revoked"


class TokenSecretError(MedicoSamError):
    """The secret file exists but holds no usable secret."""


@dataclass(frozen=True)
class TokenClaims:
    """The verified contents of a token. ``role`` is the role at sign-in; :meth:`TokenIssuer.authenticate`
    returns the user's current role."""

    subject: str
    role: Role
    issued_at: int  # epoch seconds
    expires_at: int  # epoch seconds
    token_id: str


def secret_file_for(users_file: Union[str, "os.PathLike[str]"]) -> Path:
    """Where the token secret of the users file ``users_file`` lives: ``<users_file>.secret``."""
    users_file = Path(users_file)
    return users_file.with_name(users_file.name + ".secret")


def token_from_authorization(header: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization`` header value, ``"Bearer <token>"`` (scheme in any letter case);
    None when there is no header. :class:`InvalidTokenError` for another scheme or an empty token."""
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != TOKEN_TYPE or not token.strip():
        raise InvalidTokenError("the Authorization header must be 'Bearer <token>' from POST /auth/token")
    return token.strip()


class TokenIssuer:
    """Issues and checks tokens under the secret in ``secret_file`` (created on first use).

    ``clock`` returns epoch seconds (``time.time``); tests pass their own to expire tokens without waiting.
    """

    def __init__(
        self,
        secret_file: Union[str, "os.PathLike[str]"],
        lifetime_s: int = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime_s <= 0:
            raise ValueError(f"a token lifetime must be positive, not {lifetime_s}")
        self.secret_file = Path(secret_file)
        self.lifetime_s = int(lifetime_s)
        self.clock = clock
        self._secret = _load_or_create_secret(self.secret_file)

    def __repr__(self) -> str:  # never the secret
        return f"TokenIssuer({str(self.secret_file)!r}, lifetime_s={self.lifetime_s})"

    def issue(self, user: User) -> str:
        """A new token for ``user``, valid for ``lifetime_s`` from now."""
        issued_at = int(self.clock())
        claims = {
            "sub": user.username,
            "role": user.role.label,
            "iat": issued_at,
            "exp": issued_at + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        """The claims of ``token`` if this server signed it and it has not expired.

        :class:`ExpiredTokenError` for a genuine but expired token, :class:`InvalidTokenError` for
        anything else (bad signature, another algorithm, ``alg: none``, missing or malformed claims)."""
        if not isinstance(token, str) or not token:
            raise InvalidTokenError("no token: sign in with POST /auth/token")
        try:
            # Only HS256 is accepted, so a token cannot choose its own (weaker) algorithm. Times are checked
            # below against self.clock, one clock for issuing and checking.
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as error:
            raise InvalidTokenError(f"the token is not valid ({error}): sign in again") from None
        claims = _claims(payload)
        now = self.clock()
        if now >= claims.expires_at:
            raise ExpiredTokenError(
                f"the token of {claims.subject!r} expired {_ago(now - claims.expires_at)} ago: sign in again"
            )
        if claims.issued_at > now + _CLOCK_SKEW_S or claims.expires_at <= claims.issued_at:
            raise InvalidTokenError("the token's times are impossible (issued in the future): sign in again")
        return claims

    def authenticate(self, token: str, users: UserStore) -> User:
        """The user a request's token stands for, as the users file says now (current role).

        Beyond :meth:`verify`: :class:`RevokedTokenError` if the user has been removed, or their password
        changed after the token was issued."""
        claims = self.verify(token)
        user = users.get(claims.subject)
        if user is None:
            raise RevokedTokenError(f"user {claims.subject!r} no longer exists")
        if claims.issued_at < user.tokens_valid_after:
            raise RevokedTokenError(f"the password of {claims.subject!r} changed after this sign-in: sign in again")
        return user

    def token_response(self, token: str) -> Dict[str, Any]:
        """The JSON answer of ``POST /auth/token`` that MONAI Label's clients read."""
        return {"access_token": token, "token_type": TOKEN_TYPE, "expires_in": self.lifetime_s}


def _claims(payload: Dict[str, Any]) -> TokenClaims:
    try:
        subject, token_id = payload["sub"], payload["jti"]
        issued_at, expires_at = payload["iat"], payload["exp"]
        if not isinstance(subject, str) or not isinstance(token_id, str):
            raise TypeError("sub and jti must be text")
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in (issued_at, expires_at)):
            raise TypeError("iat and exp must be whole seconds")
        role = Role.parse(payload["role"])
    except (KeyError, TypeError, InvalidRoleError) as error:
        raise InvalidTokenError(f"the token's claims are malformed ({error}): sign in again") from None
    return TokenClaims(subject, role, issued_at, expires_at, token_id)


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _load_or_create_secret(path: Path) -> bytes:
    """The secret in ``path``; if there is no file, a new one written there, unless another process wins the
    race, in which case the winner's secret is used (``os.link`` never replaces an existing file)."""
    if not path.exists():
        make_folders_durably(path.parent)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(SECRET_BYTES).hex().encode("ascii") + b"\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # created by another process meanwhile: use theirs
            else:
                fsync_directory(path.parent)
                logger.info("Created the token secret %s", path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("%s was readable by others; made it 0600 (whoever read it could sign tokens)", path)
        os.chmod(path, 0o600)
    try:
        secret = bytes.fromhex(path.read_text("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        secret = b""
    if len(secret) < 32:
        raise TokenSecretError(
            f"{path} holds no usable token secret; delete it and a new one is made (everyone signs in again)"
        )
    return secret
