"""Web UI sign-in: the admin token in an HttpOnly, SameSite=Strict cookie; CSRF checks on every change.

The cookie holds the admin token itself, so every page authenticates exactly
like the API (``admin.authenticate_admin``: a revoked token is signed out at
its next click) and roles are the API's. Changes need a CSRF token derived from
the cookie's token (HMAC-SHA256), sent as the ``X-CSRF-Token`` header (htmx,
fetch) or a ``csrf_token`` form field, and — when the browser sends one — an
``Origin`` equal to this server's.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from csi_ota.controller import admin as admin_lib
from csi_ota.controller.httputil import read_limited_body

COOKIE_NAME = "csi_ota_ui"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE_S = 12 * 3600
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
FORM_MAX_BYTES = 16 * 1024
TOKEN_MAX_CHARS = 256


class SignInRequired(Exception):
    """No valid token in the cookie: pages redirect to the sign-in form."""


class Refused(Exception):
    """The signed-in user may not do this (403 with a reason)."""

    def __init__(self, message: str, status_code: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class UiUser:
    name: str
    role: str
    csrf: str

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"

    def may(self, role: str) -> bool:
        return admin_lib.role_allows(self.role, role)


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"csi-ota-ui-csrf-v1", hashlib.sha256).hexdigest()


def _authenticate(request: Request, token: str) -> UiUser | None:
    if not token or len(token) > TOKEN_MAX_CHARS:
        return None
    with request.app.state.ctx.session() as session:
        user = admin_lib.authenticate_admin(session, token)
        if user is None:
            return None
        return UiUser(user.name, user.role, csrf_for(token))


def current_user(request: Request) -> UiUser:
    user = _authenticate(request, request.cookies.get(COOKIE_NAME, ""))
    if user is None:
        raise SignInRequired()
    return user


def require(role: str):
    """A dependency: the signed-in user, refused (403) below ``role``."""

    def dependency(request: Request) -> UiUser:
        user = current_user(request)
        if not user.may(role):
            raise Refused(f"needs the {role} role (you are {user.role})")
        return user

    return dependency


def check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin != expected:
        raise Refused(f"cross-origin request refused (Origin {origin!r})")


async def read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (at most FORM_MAX_BYTES), first value per key."""
    body = await read_limited_body(request, FORM_MAX_BYTES)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise Refused("the form is not valid UTF-8 url-encoded data", 400) from None
    return {key: values[0] for key, values in fields.items()}


def require_change(role: str):
    """A dependency for changes: signed in, at least ``role``, same origin, valid CSRF token."""

    async def dependency(request: Request) -> UiUser:
        check_origin(request)
        user = await run_in_threadpool(current_user, request)
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            request.state.form = await read_form(request)
            sent = request.state.form.get(CSRF_FIELD)
        if not sent or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
            raise Refused("missing or wrong CSRF token: reload the page and try again")
        if not user.may(role):
            raise Refused(f"needs the {role} role (you are {user.role})")
        return user

    return dependency


async def form_of(request: Request) -> dict[str, str]:
    """The form already read by require_change, or the body now."""
    form = getattr(request.state, "form", None)
    return form if form is not None else await read_form(request)


def sign_in_token(request: Request, token: str) -> UiUser | None:
    return _authenticate(request, token.strip())


def set_cookie(request: Request, response, token: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response) -> None:
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict")
