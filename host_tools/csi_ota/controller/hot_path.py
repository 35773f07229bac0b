"""The device port's hot path: version checks and firmware downloads without FastAPI, ORM or SQL.

An ASGI app in front of the device FastAPI app (csi_ota.controller.device_api). It answers

* ``GET /api/ota/version`` and ``GET /version`` — token → device from the in-memory
  :class:`~csi_ota.controller.device_cache.DeviceCache`, the registry's own
  reconcile/offer functions run on the cached device, the signed manifest sent as the
  stored bytes (200) or nothing (204). ``last_seen`` goes to the group commit
  (csi_ota.controller.write_batcher) without waiting; a check that changes what the
  registry knows waits for its group commit before it is answered;
* ``GET /api/ota/firmware/<sha256>`` and ``GET /firmware/latest`` — the same
  authentication, then Starlette's FileResponse (Range, 206/416, ETag) whose full-image
  answers go out with ``sendfile(2)`` (zero copy, the ASGI pathsend extension implemented
  here on uvicorn's httptools transport; over TLS the bytes are streamed instead, since the
  kernel cannot encrypt them).

Everything else — and any request whose query the hot path does not accept exactly
(a bad value, a repeated parameter) — goes to the FastAPI app, which answers with the
same status codes and error bodies it always did (422, 401, 403, 429, 404). The answers
of the two paths are the same bytes; tests/controller check that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import re
from urllib.parse import parse_qsl

from starlette.responses import FileResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from csi_ota.controller import registry
from csi_ota.controller.context import ControllerContext
from csi_ota.controller.device_api import (
    FIRMWARE_CHUNK_BYTES,
    SHA256_REGEX,
    STATE_NAME_REGEX,
    UNAUTHORIZED_HEADERS,
    VERSION_REGEX,
)
from csi_ota.controller.device_cache import DeviceCache
from csi_ota.controller.download_links import firmware_url
from csi_ota.controller.tokens import bearer_token
from csi_ota.controller.write_batcher import WriteBatcher

log = logging.getLogger("csi_ota.hot_path")

VERSION_PATHS = frozenset({"/api/ota/version", "/version"})
FIRMWARE_PREFIX = "/api/ota/firmware/"
FIRMWARE_ASSIGNED_PATHS = frozenset({"/api/ota/firmware", "/firmware/latest"})
PATHSEND = "http.response.pathsend"

_DEVICE_ID = registry.DEVICE_ID_PATTERN
_VERSION = re.compile(VERSION_REGEX)
_STATE = re.compile(STATE_NAME_REGEX)
_UINT = re.compile(r"^[0-9]{1,10}$")
_SHA256 = re.compile(SHA256_REGEX)
# query name -> (check, convert, maximum)
_QUERY = {
    "device_id": (_DEVICE_ID, None, None),
    "version": (_VERSION, None, None),
    "secure_version": (_UINT, int, registry.U32_MAX),
    "slot": (_UINT, int, 15),
    "state": (_STATE, None, None),
    "last_seq": (_UINT, int, registry.U32_MAX),
    "last_reason": (registry.REASON_PATTERN, None, None),
}
_ALL_QUERY = tuple(_QUERY)
TEXT_PLAIN = b"text/plain; charset=utf-8"


class Fallback(Exception):
    """The hot path does not take this request: the FastAPI app answers it."""


def parse_query(query_string: bytes, allowed: tuple[str, ...]) -> dict[str, object]:
    """The validated query, or Fallback when anything is off (FastAPI then says exactly what)."""
    result: dict[str, object] = {}
    if not query_string:
        return result
    try:
        text = query_string.decode("ascii")
        if "%" in text or "+" in text:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        else:  # nothing to unquote: parse_qsl's strict split, without its per-field unquoting
            pairs = [field.split("=", 1) for field in text.split("&")]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("bad query field")
    except (UnicodeDecodeError, ValueError):
        raise Fallback from None
    for name, value in pairs:
        spec = _QUERY.get(name)
        if spec is None or name not in allowed:
            continue  # unknown parameters are ignored, as FastAPI does
        if name in result:
            raise Fallback
        pattern, convert, maximum = spec
        if pattern.match(value) is None or value.endswith("\n"):
            raise Fallback
        if convert is not None:
            number = convert(value)
            if number > maximum:
                raise Fallback
            result[name] = number
        else:
            result[name] = value
    return result


def apply_version_check(device, query: dict, now):
    """What a version check does to a device (cached or ORM): reconcile, note an offer taken.

    Returns the release offered (None: nothing to do) — the device API's version_check, step by step.
    """
    reconcile = {name: query.get(name) for name in ("version", "secure_version", "slot", "state")}
    registry.reconcile_version_check(device, reconcile, now)
    release = registry.offered_release(device)
    if release is not None:
        registry.note_offer_taken(device, release, now)
    return release


def apply_download(device, sha256: str | None, now) -> None:
    """A download of the offered release's image (by hash, or the assigned one: None) takes the offer."""
    release = registry.offered_release(device)
    if release is not None and (sha256 is None or release.sha256 == sha256):
        registry.note_offer_taken(device, release, now)


def _authorization(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value
    return None


class HotPath:
    """ASGI app: the hot routes here, the rest to ``app``."""

    def __init__(
        self, app: ASGIApp, ctx: ControllerContext, cache: DeviceCache, batcher: WriteBatcher
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.cache = cache
        self.batcher = batcher
        checks = ctx.metrics.version_checks
        self._count_offer = checks.labels(result="offer").inc
        self._count_none = checks.labels(result="none").inc
        self._count_download = ctx.metrics.downloads.labels(status="started").inc
        self._count_bytes = ctx.metrics.bytes_served.inc
        self._count_zero_copy = ctx.metrics.bytes_zero_copy.inc
        # What the registry stores about a cached device but last_seen (one C call: a change is written).
        self._file_headers: dict[tuple, list[tuple[bytes, bytes]]] = {}
        self._state_of = operator.attrgetter(*(c for c in cache.device_columns if c != "last_seen"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            try:
                if path in VERSION_PATHS:
                    return await self.version_check(scope, receive, send)
                if path.startswith(FIRMWARE_PREFIX) and "/" not in path[len(FIRMWARE_PREFIX) :]:
                    return await self.firmware(scope, receive, send, path[len(FIRMWARE_PREFIX) :])
                if path in FIRMWARE_ASSIGNED_PATHS:
                    return await self.firmware(scope, receive, send, None)
            except Fallback:
                pass
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ shared steps

    def _authenticate(self, raw: bytes | None, claimed_id):
        """The device, or an error response (401/403/429) — the device API's _authenticate."""
        self.cache.maybe_catch_up()
        token = None if raw is None else bearer_token(raw.decode("latin-1"))
        device = None if token is None else self.cache.device_for_token(token)
        if device is None:
            return None, JSONResponse({"detail": "unauthorized"}, 401, headers=UNAUTHORIZED_HEADERS)
        if claimed_id is not None and claimed_id != device.id:
            return None, JSONResponse({"detail": "this token belongs to another device"}, 403)
        wait_s = self.ctx.rate_limiter.allow(device.id)
        if wait_s > 0:
            retry = {"Retry-After": str(max(1, math.ceil(wait_s)))}
            return None, JSONResponse({"detail": "rate limit exceeded"}, 429, headers=retry)
        return device, None

    # ------------------------------------------------------------------ version check

    async def version_check(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_query(scope["query_string"], _ALL_QUERY)
        device, refusal, pending = self.check_version(query, _authorization(scope))
        if refusal is not None:
            return await refusal(scope, receive, send)
        if pending is not None:
            await pending
        status, headers, body = self.version_answer(device)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def check_version(self, query: dict, authorization: bytes | None):
        """A version check up to its answer: (device, refusal, pending).

        ``refusal`` is the 401/403/429 response (then nothing else happened); ``pending`` is the
        group commit to await before answering (None: only ``last_seen`` moved, queued). The answer
        itself is :meth:`version_answer`, built after that wait (csi_ota.controller.fast_http calls
        both from the HTTP protocol, the ASGI path above from its coroutine).
        """
        device, refusal = self._authenticate(authorization, query.get("device_id"))
        if refusal is not None:
            return None, refusal, None
        now = self.ctx.now()
        state = self._state_of
        before = state(device)
        apply_version_check(device, query, now)
        if state(device) != before:
            # What the registry knows changes: answer once it is committed (in a group).
            pending = self._commit(device, lambda stored, q=query, t=now: apply_version_check(stored, q, t))
            return device, None, pending
        self.batcher.touch(device.id, now)
        return device, None, None

    def version_answer(self, device) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers, body) of a version check: 200 + the stored manifest, or 204."""
        release = registry.offered_release(device)
        headers = []
        config = self.cache.config_header(device)
        if config:
            headers.append((b"x-device-config", config.encode("latin-1")))
        if release is None:
            self._count_none()
            return 204, headers, b""
        self._count_offer()
        body = release.manifest
        headers.append(
            (b"x-firmware-url", firmware_url(self.ctx.settings, release.sha256, device.id).encode())
        )
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"content-type", TEXT_PLAIN))
        return 200, headers, body

    def release_by_hash(self, device, sha256: str):
        """The stored release ``device`` may download by this hash (None: unknown or not its own)."""
        candidates = self.cache.releases_by_sha.get(sha256, ()) if _SHA256.match(sha256) else ()
        return next((r for r in candidates if registry.may_download(device, r)), None)

    @property
    def download_slots(self):
        """The per-device download cap (issue 12 H4) of the device app, if it has one."""
        return getattr(getattr(self.app, "state", None), "download_slots", None)

    def accel_headers(self, release) -> list[tuple[bytes, bytes]]:
        """The X-Accel-Redirect answer's headers (``serve --x-accel-redirect``: nginx sends the file)."""
        return [
            (b"x-accel-redirect", f"{self.ctx.settings.accel_redirect_prefix}{release.sha256}.bin".encode()),
            (b"etag", f'"{release.sha256}"'.encode()),
            (b"content-type", b"application/octet-stream"),
            (b"content-length", b"0"),
        ]

    def file_headers(self, release, stat_result) -> list[tuple[bytes, bytes]]:
        """The headers of a full image's 200, as the FileResponse of the ASGI path makes them (memoised)."""
        key = (release.sha256, stat_result.st_size, stat_result.st_mtime)
        headers = self._file_headers.get(key)
        if headers is None:
            if len(self._file_headers) > 256:
                self._file_headers.clear()
            headers = self._file_headers[key] = list(_file_response(release, stat_result).raw_headers)
        return headers

    async def _commit(self, device, apply) -> None:
        try:
            await self.batcher.reconcile(device.id, apply)
        except Exception:
            with contextlib.suppress(Exception):  # the cache guessed ahead of a write that failed
                self.cache.reload_device(device.id)
            raise

    # ------------------------------------------------------------------ firmware

    async def firmware(self, scope: Scope, receive: Receive, send: Send, sha256: str | None) -> None:
        query = parse_query(scope["query_string"], ("device_id",)) if sha256 is None else {}
        device, refusal = self._authenticate(_authorization(scope), query.get("device_id"))
        if refusal is not None:
            return await refusal(scope, receive, send)
        if sha256 is None:
            release = registry.offered_release(device)
            if release is None:
                return await JSONResponse({"detail": "no update assigned to this device"}, 404)(
                    scope, receive, send
                )
        else:
            release = self.release_by_hash(device, sha256)
            if release is None:  # unknown, or not this device's: the same answer
                return await JSONResponse(*NO_SUCH_FIRMWARE)(scope, receive, send)
        now = self.ctx.now()
        before = self._state_of(device)
        apply_download(device, sha256, now)
        if self._state_of(device) != before:
            await self._commit(device, lambda stored, h=sha256, t=now: apply_download(stored, h, t))
        stat_result = self.cache.firmware_stat(release)
        if stat_result is None:
            return await JSONResponse(*FIRMWARE_MISSING)(scope, receive, send)
        prefix = self.ctx.settings.accel_redirect_prefix
        slots = self.download_slots
        slot = None
        if slots is not None and not prefix:
            slot = slots.acquire(device.id)  # evicts the device's oldest download beyond the cap
        self._count_download()
        if prefix:  # nginx in front sends the file; the controller only authorises
            await send({"type": "http.response.start", "status": 200, "headers": self.accel_headers(release)})
            await send({"type": "http.response.body", "body": b""})
            return
        response = _file_response(release, stat_result)
        response.chunk_size = FIRMWARE_CHUNK_BYTES
        server_send = send
        zero_copy = _sendfile_target(send) is not None and scope.get("scheme") == "http"
        if zero_copy:
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), PATHSEND: {}}}

        async def counting_send(message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                self._count_bytes(len(message.get("body", b"")))
            elif kind == PATHSEND:
                sent = await self._pathsend(server_send, message["path"], stat_result.st_size)
                self._count_bytes(sent)
                return
            await server_send(message)

        if slot is not None:
            slot.bind()
        try:
            await response(scope, receive, counting_send)
        except asyncio.CancelledError:
            if slot is None or not slot.evicted:
                raise
            # A newer download of the same device evicted this one; uvicorn closes the connection.
        finally:
            if slot is not None:
                slots.release(device.id, slot)

    async def _pathsend(self, send: Send, path: str, size: int) -> int:
        """sendfile(2) of the whole file onto uvicorn's transport, then the end of the response."""
        cycle = _sendfile_target(send)
        transport = cycle.transport
        loop = asyncio.get_running_loop()
        if cycle.flow.write_paused:
            await cycle.flow.drain()
        sent = 0
        try:
            with open(path, "rb") as file:
                sent = await loop.sendfile(transport, file, 0, size)
        except (ConnectionError, OSError, RuntimeError):
            cycle.disconnected = True  # the client went away mid-image: nothing more to say
            transport.close()
            return sent
        self._count_zero_copy(sent)
        cycle.expected_content_length -= sent
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return sent


NO_SUCH_FIRMWARE = ({"detail": "no such firmware"}, 404)
FIRMWARE_MISSING = ({"detail": "firmware image missing from the store"}, 404)


def _file_response(release, stat_result) -> FileResponse:
    return FileResponse(
        release.path,
        media_type="application/octet-stream",
        headers={
            "ETag": f'"{release.sha256}"',
            "Cache-Control": "private, max-age=31536000, immutable",
        },
        stat_result=stat_result,
    )


def _sendfile_target(send: Send):
    """uvicorn's httptools RequestResponseCycle behind ``send``, if it is one we can sendfile on."""
    cycle = getattr(send, "__self__", None)
    if cycle is None or type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
        return None
    if not all(hasattr(cycle, a) for a in ("transport", "flow", "expected_content_length", "disconnected")):
        return None
    return cycle
