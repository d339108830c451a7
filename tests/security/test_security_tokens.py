"""medicosam_app.security.tokens: signed, expiring tokens; the secret beside the users file."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from medicosam_app.security.tokens import (
    DEFAULT_LIFETIME_S,
    ExpiredTokenError,
    InvalidTokenError,
    RevokedTokenError,
    TokenError,
    TokenIssuer,
    TokenSecretError,
    secret_file_for,
    token_from_authorization,
)
from medicosam_app.security.users import Role, UserStore

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture()
def store(tmp_path, clock) -> UserStore:
    store = UserStore(tmp_path / "users.json", rounds=4, clock=clock)  # one clock for users and tokens
    store.add("alice", "password1", "reviewer")
    return store


@pytest.fixture()
def issuer(store, clock) -> TokenIssuer:
    return TokenIssuer(secret_file_for(store.path), clock=clock)


def _secret(issuer: TokenIssuer) -> bytes:
    return bytes.fromhex(issuer.secret_file.read_text().strip())


def test_issue_then_verify(store, issuer, clock):
    token = issuer.issue(store.get("alice"))
    claims = issuer.verify(token)
    assert claims.subject == "alice" and claims.role is Role.REVIEWER
    assert claims.issued_at == int(clock.now)
    assert claims.expires_at == int(clock.now) + DEFAULT_LIFETIME_S == claims.issued_at + 8 * 3600
    assert len(claims.token_id) >= 16
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert set(jwt.decode(token, options={"verify_signature": False})) == {"sub", "role", "iat", "exp", "jti"}
    assert issuer.verify(issuer.issue(store.get("alice"))).token_id != claims.token_id


def test_expired_is_told_apart_from_invalid(store, issuer, clock):
    token = issuer.issue(store.get("alice"))
    clock.now += DEFAULT_LIFETIME_S - 1
    assert issuer.verify(token).subject == "alice"
    clock.now += 1
    with pytest.raises(ExpiredTokenError, match="expired 0 s ago: sign in again") as expired:
        issuer.verify(token)
    assert not isinstance(expired.value, InvalidTokenError)
    assert isinstance(expired.value, TokenError) and expired.value.status == 401 and expired.value.reason == "expired"


def test_short_lifetime(store, tmp_path):
    issuer = TokenIssuer(tmp_path / "secret", lifetime_s=1)
    token = issuer.issue(store.get("alice"))
    time.sleep(1.1)  # iat is whole seconds, so the token ends within the next second
    with pytest.raises(ExpiredTokenError):
        issuer.verify(token)


def _forge(claims: dict, key: bytes, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_forged_and_damaged_tokens_are_invalid(store, issuer, tmp_path, clock):
    good = issuer.issue(store.get("alice"))
    payload = jwt.decode(good, options={"verify_signature": False})
    secret = _secret(issuer)
    header, body, signature = good.split(".")
    elevated = base64.urlsafe_b64encode(json.dumps({**payload, "role": "admin"}).encode()).rstrip(b"=").decode()
    unsigned = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode() + "." + body + "."
    )
    other = TokenIssuer(tmp_path / "other.secret", clock=clock)
    cases = {
        "signature changed": f"{header}.{body}.{signature[:-2]}AA",
        "claims changed (role)": f"{header}.{elevated}.{signature}",
        "alg none": unsigned,
        "another server's secret": other.issue(store.get("alice")),
        "another algorithm": _forge(payload, secret, "HS512"),
        "no jti": _forge({k: v for k, v in payload.items() if k != "jti"}, secret),
        "no role": _forge({k: v for k, v in payload.items() if k != "role"}, secret),
        "unknown role": _forge({**payload, "role": "superuser"}, secret),
        "issued in the future": _forge({**payload, "iat": payload["iat"] + 3600, "exp": payload["exp"] + 3600}, secret),
        "times as text": _forge({**payload, "exp": str(payload["exp"])}, secret),
        "not a token": "hello",
        "empty": "",
    }
    for what, token in cases.items():
        with pytest.raises(InvalidTokenError):
            issuer.verify(token)
            pytest.fail(f"accepted: {what}")


def test_secret_file_private_reused_and_never_shown(store, issuer, clock):
    path = issuer.secret_file
    assert path == store.path.with_name("users.json.secret")
    assert os.stat(path).st_mode & 0o777 == 0o600
    secret = _secret(issuer)
    assert len(secret) == 64
    assert secret.hex() not in repr(issuer) and str(path) in repr(issuer)
    token = issuer.issue(store.get("alice"))
    again = TokenIssuer(path, clock=clock)  # a restart reads the same secret: tokens survive it
    assert again.verify(token).subject == "alice"
    assert _secret(again) == secret


def test_processes_starting_together_agree_on_one_secret(store, tmp_path):
    secret_file = tmp_path / "race" / "users.json.secret"
    code = (
        "import sys; from medicosam_app.security.tokens import TokenIssuer; "
        "from medicosam_app.security.users import UserStore; "
        "print(TokenIssuer(sys.argv[1]).issue(UserStore(sys.argv[2]).get('alice')))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(secret_file), str(store.path)], cwd=REPO,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    tokens = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    issuer = TokenIssuer(secret_file)
    assert [issuer.verify(token).subject for token in tokens] == ["alice"] * 6
    assert sorted(os.listdir(secret_file.parent)) == ["users.json.secret"]  # no temporaries left


def test_damaged_secret_and_loose_mode(tmp_path, caplog):
    secret_file = tmp_path / "users.json.secret"
    secret_file.write_text("abcd\n")
    with pytest.raises(TokenSecretError, match="delete it"):
        TokenIssuer(secret_file)
    secret_file.write_text(os.urandom(64).hex())
    os.chmod(secret_file, 0o644)
    TokenIssuer(secret_file)
    assert os.stat(secret_file).st_mode & 0o777 == 0o600
    assert "readable by others" in caplog.text


def test_authenticate_follows_the_users_file(store, issuer, clock):
    token = issuer.issue(store.get("alice"))
    clock.now += 600
    assert issuer.authenticate(token, store).role is Role.REVIEWER
    store.set_role("alice", "annotator")
    assert issuer.authenticate(token, store).role is Role.ANNOTATOR  # the file's role, not the token's
    store.set_password("alice", "password2")  # ten minutes after the sign-in
    with pytest.raises(RevokedTokenError, match="changed after this sign-in") as revoked:
        issuer.authenticate(token, store)
    assert revoked.value.reason == "revoked"
    fresh = issuer.issue(store.get("alice"))
    assert issuer.authenticate(fresh, store).username == "alice"
    store.remove("alice")
    with pytest.raises(RevokedTokenError, match="no longer exists"):
        issuer.authenticate(fresh, store)


def test_authorization_header():
    assert token_from_authorization(None) is None
    assert token_from_authorization("  ") is None
    assert token_from_authorization("Bearer abc.def.ghi") == "abc.def.ghi"
    assert token_from_authorization("bearer   abc ") == "abc"
    for header in ("Basic YWxpY2U6cHc=", "Bearer", "abc.def.ghi"):
        with pytest.raises(InvalidTokenError, match="Bearer <token>"):
            token_from_authorization(header)


def test_token_response_is_what_monai_label_clients_read(store, issuer):
    token = issuer.issue(store.get("alice"))
    response = issuer.token_response(token)
    assert response == {"access_token": token, "token_type": "bearer", "expires_in": 8 * 3600}
    # The Slicer client sends "<token_type> <access_token>" back:
    assert token_from_authorization(f"{response['token_type']} {response['access_token']}") == token


def test_lifetime_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        TokenIssuer(tmp_path / "secret", lifetime_s=0)
