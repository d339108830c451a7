"""Sign-in, roles and the audit trail in front of every route of the running server.

One ASGI middleware sits inside MONAI Label's CORS middleware and in front of every route, MONAI Label's
and ours (replaced ones included, since it runs before routing). For each HTTP request it

1. finds the caller: a bearer token (``Authorization``, as MONAI Label's client sends after
   ``POST /auth/token``) or the same token in the HttpOnly cookie that the sign-in page sets for OHIF,
   whose extension sends no header;
2. checks the role the permissions table (:mod:`medicosam_app.security.permissions`) asks for: no or bad
   token 401, too low a role 403; an OHIF page without sign-in is redirected to the sign-in page;
3. lets the request through with the user in the request context (:mod:`.request_context`), and
4. appends one audit line for each call of a route whose row names an audit event, and for every refused
   request (4xx).

The route table (:data:`medicosam_app.security.permissions.RULES`) drives all of it: the role, the audit event,
and, through the request context, who may act on another user's label or session.

When no users file is configured, authentication is off: every request passes, and the audit trail still
records, with the client's ``client_id`` as user. When MONAI Label's own Keycloak sign-in is enabled
(``MONAI_LABEL_AUTH_ENABLE``) it stays in charge and this module only audits.
"""

from __future__ import annotations

import json
import math
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Tuple
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from medicosam_app.security.audit import AuditLog
from medicosam_app.security.audit_record import AuditRecord
from medicosam_app.security.throttle import SignInThrottle
from medicosam_app.security.permissions import DEFAULT_ROLE, Rule, rule_for
from medicosam_app.security.tokens import TokenError, TokenIssuer, secret_file_for, token_from_authorization
from medicosam_app.security.users import User, UserStore

from ..http.network import caller_is_local
from .request_context import handling_request

logger = logging.getLogger(__name__)

COOKIE = "medicosam_token"
SIGN_IN_PAGE = "/auth/signin"
_BODY_KEPT = 4096  # bytes of a refused answer's body kept for the audit line's ``detail``

@dataclass
class Caller:
    user: Optional[User]
    problem: Optional[str] = None  # why a token that was sent is not accepted


class SignInThrottled(Exception):
    """Too many failed sign-ins for this user name or address: try again in ``wait_s`` seconds."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s)
        self.wait_s = max(1, math.ceil(wait_s))

    @property
    def message(self) -> str:
        return (f"Too many failed sign-ins for this user name or from this address: try again in {self.wait_s} s. "
                "An administrator can reset a forgotten password (python -m medicosam_app users).")


class SiteAccess:
    """The users file, the token issuer and the audit log of one server.

    ``users_file`` None: authentication off. ``api_prefix``: MONAI Label's ``MONAI_LABEL_API_STR``. ``rules``: the
    route table (default :data:`~medicosam_app.security.permissions.RULES`)."""

    def __init__(
        self,
        users_file: Optional[Path],
        audit: AuditLog,
        api_prefix: str = "",
        token_lifetime_s: Optional[int] = None,
        rules: Optional[Sequence[Rule]] = None,
    ) -> None:
        self.audit = audit
        self.rules = rules
        self.api_prefix = api_prefix.rstrip("/")
        self.users: Optional[UserStore] = None
        self.tokens: Optional[TokenIssuer] = None
        self.throttle = SignInThrottle()
        if users_file is not None:
            self.users = UserStore(users_file)
            lifetime = {"lifetime_s": token_lifetime_s} if token_lifetime_s else {}
            self.tokens = TokenIssuer(secret_file_for(users_file), **lifetime)

    @property
    def enabled(self) -> bool:
        return self.users is not None

    def identify(self, request: Request) -> Caller:
        """The user a request's token (header first, then the sign-in cookie) stands for."""
        if self.users is None or self.tokens is None:
            return Caller(None)
        token = token_from_authorization(request.headers.get("authorization")) or request.cookies.get(COOKIE)
        if not token:
            return Caller(None, "no token: sign in with POST /auth/token (user name and password)")
        try:
            return Caller(self.tokens.authenticate(token, self.users))
        except TokenError as error:
            return Caller(None, str(error))

    def sign_in(self, username: str, password: str, address: Optional[str]) -> Optional[User]:
        """The user, or None for a wrong name or password; :class:`SignInThrottled` while failures make the
        user name or the address wait (the password is then not even checked)."""
        assert self.users is not None
        wait = self.throttle.wait_s(username, address)
        if wait > 0:
            raise SignInThrottled(wait)
        user = self.users.verify(username, password)
        if user is None:
            self.throttle.failed(username, address)
        else:
            self.throttle.succeeded(username, address)
        return user

    def record(self, **fields: Any) -> None:
        """One audit line; a full disk or a broken audit folder is logged, never the cause of a failed request."""
        try:
            self.audit.append(AuditRecord(**fields))
        except Exception:  # noqa: BLE001 - the trail must not take the server down with it
            logger.exception("Could not append to the audit trail in %s", self.audit)


# -- the middleware -------------------------------------------------------------------------------------


def _is_ohif_page(path: str) -> bool:
    """The viewer's HTML (its index and client-side routes), not its scripts and images."""
    if path in ("/ohif", "/ohif/"):
        return True
    last = path.rsplit("/", 1)[-1]
    return path.startswith("/ohif/") and ("." not in last or last.endswith(".html"))


def _json_detail(body: bytes) -> Optional[str]:
    try:
        detail = json.loads(body.decode("utf-8")).get("detail")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return body[:300].decode("utf-8", "replace") or None
    return detail if isinstance(detail, str) else json.dumps(detail)[:1000]


class AccessControl:
    """The ASGI middleware; see the module docstring."""

    def __init__(self, app: Callable[..., Awaitable[None]], access: SiteAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method, path = scope["method"], scope["path"]
        relative = path[len(self.access.api_prefix):] if path.startswith(self.access.api_prefix) else path
        started = time.perf_counter()
        caller = self.access.identify(request)
        rule = rule_for(method, path, self.access.api_prefix, self.access.rules)
        refusal = self._refusal(method, path, rule, caller, caller_is_local(scope))
        if self.access.enabled and caller.user is None and method == "GET" and _is_ohif_page(relative):
            # The viewer's code is public, but a viewer without sign-in could load no images: sign in first.
            refusal = (401, "sign in to use the viewer")
        if refusal is not None:
            status, message = refusal
            if status == 401 and method == "GET" and _is_ohif_page(relative):
                target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
                await RedirectResponse(f"{self.access.api_prefix}{SIGN_IN_PAGE}?next={quote(target)}", 303)(
                    scope, receive, send
                )
                return
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            self._audit(method, relative, caller.user, status, {}, message, started, "refused")
            await JSONResponse({"detail": message}, status_code=status, headers=headers)(scope, receive, send)
            return

        answer: Dict[str, Any] = {"status": 500, "body": b"", "recorded": False}

        def record() -> None:
            if not answer["recorded"]:
                answer["recorded"] = True
                status = answer["status"]
                detail = _json_detail(answer["body"]) if status >= 400 else None
                event = rule.audit if rule is not None and rule.method == method else None  # not HEAD for GET
                self._audit(method, relative, caller.user, status, details, detail, started, event)

        async def send_and_watch(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                if answer["status"] >= 400 and len(answer["body"]) < _BODY_KEPT:
                    answer["body"] += message.get("body", b"")[:_BODY_KEPT]
                if not message.get("more_body", False):
                    record()  # before the client has its answer: whoever reads the trail next finds the line
            await send(message)

        with handling_request(caller.user, rule) as details:
            try:
                await self.app(scope, receive, send_and_watch)
            finally:
                record()  # the request failed or the client went away before the answer was complete

    def _refusal(
        self, method: str, path: str, rule: Optional[Rule], caller: Caller, local: bool = False
    ) -> Optional[Tuple[int, str]]:
        if not self.access.enabled:
            return None
        if rule is not None and rule.loopback and local:
            return None
        needed = DEFAULT_ROLE if rule is None else rule.role
        if needed is None:
            return None
        if caller.user is None:
            return 401, f"Sign-in required for {method} {path}: {caller.problem}"
        if caller.user.role < needed:
            return 403, (
                f"{method} {path} needs the role {needed.label}; {caller.user.username!r} is {caller.user.role.label}. "
                "Ask an administrator (python -m medicosam_app users) if you need it."
            )
        return None

    def _audit(
        self,
        method: str,
        path: str,
        user: Optional[User],
        status: int,
        details: Dict[str, Any],
        detail: Optional[str],
        started: float,
        event: Optional[str],
    ) -> None:
        event = event or ("refused" if 400 <= status < 500 else None)
        if event is None:
            return
        fields = dict(details)
        name = fields.pop("user", None)
        self.access.record(
            event=event,
            endpoint=f"{method} {path}",
            status=status,
            user=user.username if user is not None else name,
            role=user.role.label if user is not None else None,
            detail=detail,
            latency_s=round(time.perf_counter() - started, 4),
            **{key: fields[key] for key in ("task", "image", "prompts", "model", "result") if key in fields},
        )


def install_access_control(app: FastAPI, access: SiteAccess, cors_origins: Optional[Sequence[str]]) -> None:
    """Put :class:`AccessControl` inside the CORS middleware and rebuild the running app's middleware stack
    (MONAI Label builds it before the app's start-up code runs; no request has been served yet).

    ``cors_origins``: None keeps MONAI Label's CORS setting; a list replaces it (empty: no other origin)."""
    kept = []
    for entry in app.user_middleware:
        if entry.cls is CORSMiddleware and cors_origins is not None:
            entry = Middleware(
                CORSMiddleware, allow_origins=list(cors_origins), allow_credentials=True,
                allow_methods=["*"], allow_headers=["*"],
            )
        if entry.cls is not AccessControl:
            kept.append(entry)
    app.user_middleware = kept[:1] + [Middleware(AccessControl, access=access)] + kept[1:]
    app.middleware_stack = app.build_middleware_stack()
    logger.info(
        "Authentication %s; audit trail in %s; CORS origins: %s",
        f"on (users file {access.users.path})" if access.users is not None else "off",
        access.audit.directory,
        "unchanged" if cors_origins is None else (", ".join(cors_origins) or "this server only"),
    )
