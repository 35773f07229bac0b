"""An ASGI guard in front of both apps: every request body is capped, and on the management port
the caller is authenticated before a single body byte is read (issue 12 M1).

FastAPI reads a JSON body before it runs an endpoint's dependencies (its auth), so without this an
anonymous 400 MB POST to /api/rollouts was read into memory before the 401. The guard answers
401 (management, no valid admin token) or 413 (declared or streamed size over the limit) with
``{"detail": ...}`` and ``Connection: close``, never reading what it refuses. Endpoints keep their
own, tighter checks (e.g. read_limited_body, FIRMWARE_MAX_SIZE on uploads).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csi_ota.controller.tokens import bearer_token

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so FastAPI's handlers turn it into a 413 too."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"request body larger than {limit_bytes} bytes")


async def _answer(
    send: Send, status: int, detail: str, extra_headers: list[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _authorization(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class RequestGuard:
    """Caps bodies (``limit_for(path)`` bytes) and, if ``authenticate`` is given, checks the bearer token
    of every request that carries a body before the app reads it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit_for: Callable[[str], int],
        authenticate: Callable[[str], bool] | None = None,
        auth_exempt_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.authenticate = authenticate
        self.auth_exempt_prefixes = auth_exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        path = scope.get("path", "")
        exempt = any(path == p or path.startswith(p + "/") for p in self.auth_exempt_prefixes)
        if self.authenticate is not None and declared != 0 and not exempt:
            token = bearer_token(_authorization(scope))
            if token is None or not await run_in_threadpool(self.authenticate, token):
                await _answer(send, 401, "unauthorized", [(b"www-authenticate", b"Bearer")])
                return
        limit = self.limit_for(path)
        if declared is not None and declared > limit:
            await _answer(send, 413, f"request body larger than {limit} bytes")
            return
        await self._capped(scope, receive, send, limit)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await _answer(send, 413, f"request body larger than {limit} bytes")


def install_request_guard(
    app,
    *,
    limit_for: Callable[[str], int],
    authenticate: Callable[[str], bool] | None = None,
    auth_exempt_prefixes: tuple[str, ...] = (),
) -> None:
    """``auth_exempt_prefixes``: paths that authenticate by themselves (the web UI's cookie sign-in);
    their bodies are still capped."""
    app.add_middleware(
        RequestGuard,
        limit_for=limit_for,
        authenticate=authenticate,
        auth_exempt_prefixes=auth_exempt_prefixes,
    )
