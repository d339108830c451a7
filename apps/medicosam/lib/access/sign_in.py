"""The sign-in routes: MONAI Label's protocol (``/auth/``, ``/auth/token``, ``/auth/token/valid``) against the users
file, and a sign-in page for browsers (the viewers) that sets the token as an HttpOnly, same-site cookie. Failed
passwords make the next try wait (:class:`~lib.access.access_control.SignInThrottled`, 429 + Retry-After)."""

from __future__ import annotations

import html
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .access_control import COOKIE, SIGN_IN_PAGE, SignInThrottled, SiteAccess
from ..http.network import is_loopback

def _safe_next(target: str) -> str:
    """Only a path on this server (no scheme, no host, no ``//``): the sign-in page is no open redirect."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/ohif/"
    return target


def _sign_in_page(prefix: str, next_path: str, message: str = "") -> str:
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · MedicoSAM Label</title>
<style>body{{font-family:sans-serif;background:#0b1a2a;color:#eee;display:flex;justify-content:center;margin-top:12vh}}
form{{background:#14273d;padding:2em;border-radius:8px;min-width:18em}}label{{display:block;margin-top:1em}}
input{{width:100%;padding:.4em;margin-top:.2em}}button{{margin-top:1.5em;padding:.5em 1.5em}}.error{{color:#ff9c9c}}</style>
</head><body><form method="post" action="{html.escape(prefix + SIGN_IN_PAGE)}">
<h2>MedicoSAM Label</h2>{error}
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label>User name <input name="username" autocomplete="username" autofocus required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></body></html>"""


def _address(request: Request) -> Optional[str]:
    """The caller's address for the sign-in back-off; None on this machine. (Behind a reverse proxy that sends
    X-Forwarded-For, uvicorn already puts the client's address here; a proxy that does not would make every
    caller one local address.)"""
    if request.client is None or is_loopback(request.client.host):
        return None
    return request.client.host


def add_sign_in_routes(app: FastAPI, access: SiteAccess) -> None:
    """MONAI Label's sign-in protocol (``/auth/``, ``/auth/token``, ``/auth/token/valid``) against the users
    file, and a sign-in page for browsers (OHIF) that sets the token as an HttpOnly, same-site cookie."""
    assert access.tokens is not None
    tokens = access.tokens
    app_router = APIRouter()
    prefix = access.api_prefix

    def failed_sign_in(username: str) -> str:
        return f"Wrong user name or password for {username!r}." if username else "Send a user name and a password."

    @app_router.get("/auth/", tags=["Auth"], summary="Is sign-in required?")
    async def auth_enabled() -> Dict[str, Any]:
        return {"enabled": True, "client_id": None, "realm": None}

    @app_router.post("/auth/token", tags=["Auth"], summary="Sign in: a bearer token for a user name and password")
    def access_token(request: Request, username: str = Form(""), password: str = Form("")) -> Response:
        try:
            user = access.sign_in(username, password, _address(request)) if username and password else None
        except SignInThrottled as throttled:
            return JSONResponse({"detail": throttled.message}, 429, headers={"Retry-After": str(throttled.wait_s)})
        if user is None:
            return JSONResponse({"detail": failed_sign_in(username)}, 401, headers={"WWW-Authenticate": "Bearer"})
        from .request_context import add_audit_details

        add_audit_details(user=user.username)
        return JSONResponse(tokens.token_response(tokens.issue(user)))

    @app_router.get("/auth/token/valid", tags=["Auth"], summary="Is my token valid? (the user and role if so)")
    async def valid_token(request: Request) -> Dict[str, Any]:
        caller = access.identify(request)
        assert caller.user is not None  # the middleware answered 401 otherwise
        return {"username": caller.user.username, "roles": [caller.user.role.label]}

    @app_router.get(SIGN_IN_PAGE, include_in_schema=False)
    async def sign_in_page(next: str = "/ohif/") -> HTMLResponse:
        return HTMLResponse(_sign_in_page(prefix, _safe_next(next)))

    @app_router.post(SIGN_IN_PAGE, include_in_schema=False)
    def sign_in_form(
        request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/ohif/")
    ) -> Response:
        target = _safe_next(next)
        try:
            user = access.sign_in(username, password, _address(request)) if username and password else None
        except SignInThrottled as throttled:
            return HTMLResponse(_sign_in_page(prefix, target, throttled.message), status_code=429,
                                headers={"Retry-After": str(throttled.wait_s)})
        if user is None:
            return HTMLResponse(_sign_in_page(prefix, target, failed_sign_in(username)), status_code=401)
        from .request_context import add_audit_details

        add_audit_details(user=user.username)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, tokens.issue(user), max_age=tokens.lifetime_s, httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path="/",
        )
        return response

    @app_router.post("/auth/signout", include_in_schema=False)
    async def sign_out() -> Response:
        response = RedirectResponse(prefix + SIGN_IN_PAGE, status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    app.include_router(app_router, prefix=prefix)


# -- installing it --------------------------------------------------------------------------------------
