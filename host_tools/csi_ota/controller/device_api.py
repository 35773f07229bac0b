"""The device API (port 8080): version check, firmware download, status, heartbeat, CSI data.

docs/device-protocol.md is the contract. Every endpoint except /healthz needs
the device's own bearer token: unknown, revoked or decommissioned tokens get
401 with no detail; a device id (path, query or body) that is not the token's
device gets 403. Admin tokens are unknown here. Each device has a token-bucket
rate limit (429 + Retry-After).
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from csi_ota.controller import registry
from csi_ota.controller.context import ControllerContext
from csi_ota.controller.download_links import firmware_url
from csi_ota.controller.download_slots import DownloadSlot, DownloadSlots
from csi_ota.controller.httputil import install_error_handlers, parse_json_model, read_limited_body
from csi_ota.controller.models import Device, Release
from csi_ota.controller.request_guard import install_request_guard
from csi_ota.controller.tokens import bearer_token

DEVICE_ID_REGEX = registry.DEVICE_ID_PATTERN.pattern
VERSION_REGEX = registry.VERSION_TEXT_PATTERN.pattern
REPORTED_VERSION_REGEX = registry.REPORTED_VERSION_PATTERN.pattern
SHA256_REGEX = r"^[0-9a-f]{64}$"
STATE_NAME_REGEX = r"^[a-z_]{1,20}$"
U32 = registry.U32_MAX
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}
FIRMWARE_CHUNK_BYTES = 256 * 1024

DeviceIdQuery = Annotated[str | None, Query(pattern=DEVICE_ID_REGEX, description="the device's id")]


class StatusReportIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    device_id: str = Field(pattern=DEVICE_ID_REGEX)
    seq: int = Field(ge=0, le=U32)
    state: Literal[registry.OTA_STATES]  # type: ignore[valid-type]
    reason: str = Field("ok", pattern=registry.REASON_PATTERN.pattern)
    version: str | None = Field(None, pattern=REPORTED_VERSION_REGEX)
    target_version: str | None = Field(None, pattern=REPORTED_VERSION_REGEX)
    target_sha256: str | None = Field(None, pattern=r"^([0-9a-f]{64})?$")
    manifest_sequence: int | None = Field(None, ge=0, le=U32)
    bytes_written: int | None = Field(None, ge=0, le=U32)
    slot: int | None = Field(None, ge=0, le=15)  # the running OTA slot, when the device says


class StatusAck(BaseModel):
    ack_seq: int


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    device_id: str | None = Field(None, pattern=DEVICE_ID_REGEX)
    version: str | None = Field(None, pattern=REPORTED_VERSION_REGEX)
    uptime_s: int | None = Field(None, ge=0, le=2**63 - 1)
    rssi: int | None = Field(None, ge=-128, le=127)
    csi_frames: int | None = Field(None, ge=0, le=2**63 - 1)
    free_heap: int | None = Field(None, ge=0, le=2**63 - 1)
    ota_state: str | None = Field(None, pattern=STATE_NAME_REGEX)
    slot: int | None = Field(None, ge=0, le=15)
    check_interval_sec: int | None = Field(None, ge=1, le=7 * 24 * 3600)
    heartbeat_interval_sec: int | None = Field(None, ge=1, le=7 * 24 * 3600)


class Ok(BaseModel):
    ok: bool = True


class CountingFileResponse(FileResponse):
    """A FileResponse (Range, 206/416, ETag) that counts the body bytes it sends.

    Chunks of FIRMWARE_CHUNK_BYTES bound the memory per download (at most one chunk in flight per client).
    """

    chunk_size = FIRMWARE_CHUNK_BYTES

    def __init__(self, *args, on_bytes, slot: DownloadSlot | None = None, on_done=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_bytes = on_bytes
        self._slot = slot
        self._on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_send(message) -> None:
            if message["type"] == "http.response.body":
                self._on_bytes(len(message.get("body", b"")))
            await send(message)

        if self._slot is not None:
            self._slot.bind()
        try:
            await super().__call__(scope, receive, counting_send)
        except asyncio.CancelledError:
            if self._slot is None or not self._slot.evicted:
                raise
            # A newer download of the same device evicted this one; uvicorn closes the connection.
        finally:
            if self._on_done is not None:
                self._on_done()


def _ctx(request: Request) -> ControllerContext:
    return request.app.state.ctx


def _authenticate(
    ctx: ControllerContext, session: Session, request: Request, claimed_id: str | None
) -> Device:
    token = bearer_token(request.headers.get("authorization"))
    device = None if token is None else registry.authenticate_device(session, token)
    if device is None:
        raise HTTPException(401, "unauthorized", headers=UNAUTHORIZED_HEADERS)
    if claimed_id is not None and claimed_id != device.id:
        raise HTTPException(403, "this token belongs to another device")
    wait_s = ctx.rate_limiter.allow(device.id)
    if wait_s > 0:
        raise HTTPException(
            429, "rate limit exceeded", headers={"Retry-After": str(max(1, math.ceil(wait_s)))}
        )
    return device


def _firmware_response(
    ctx: ControllerContext, release: Release, device_id: str | None = None, slots: DownloadSlots | None = None
) -> Response:
    path = ctx.store.path_for(release.sha256)
    if not path.is_file():
        raise HTTPException(404, "firmware image missing from the store")
    slot = on_done = None
    if slots is not None and device_id is not None and not ctx.settings.accel_redirect_prefix:
        slot = slots.acquire(device_id)  # evicts the device's oldest download beyond the cap
        on_done = lambda: slots.release(device_id, slot)  # noqa: E731
    ctx.metrics.downloads.labels(status="started").inc()
    prefix = ctx.settings.accel_redirect_prefix
    if prefix:  # nginx in front sends the file (Range, sendfile); the controller only authorises
        return Response(
            headers={
                "X-Accel-Redirect": f"{prefix}{release.sha256}.bin",
                "ETag": f'"{release.sha256}"',
                "Content-Type": "application/octet-stream",
            }
        )
    return CountingFileResponse(
        path,
        media_type="application/octet-stream",
        headers={"ETag": f'"{release.sha256}"', "Cache-Control": "private, max-age=31536000, immutable"},
        on_bytes=ctx.metrics.bytes_served.inc,
        slot=slot,
        on_done=on_done,
    )


def device_body_limit(ctx: ControllerContext):
    """Bytes a device request body may have: max_csi_body_bytes for /api/csi/data, the JSON limit otherwise."""
    csi_bytes, json_bytes = ctx.settings.max_csi_body_bytes, ctx.settings.max_json_body_bytes
    return lambda path: csi_bytes if path == "/api/csi/data" else json_bytes


def create_device_app(ctx: ControllerContext) -> FastAPI:
    app = FastAPI(
        title="csi-ota device API",
        version="1",
        description="Port 8080: what ESP32-S3 sensors call (docs/device-protocol.md).",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    install_request_guard(app, limit_for=device_body_limit(ctx))
    app.state.download_slots = DownloadSlots(ctx.settings.downloads_per_device)

    @app.get("/healthz", response_model=Ok, tags=["health"])
    def healthz() -> Ok:
        return Ok()

    def version_check(
        request: Request,
        device_id: DeviceIdQuery = None,
        version: Annotated[str | None, Query(pattern=VERSION_REGEX)] = None,
        secure_version: Annotated[int | None, Query(ge=0, le=U32)] = None,
        slot: Annotated[int | None, Query(ge=0, le=15)] = None,
        state: Annotated[str | None, Query(pattern=STATE_NAME_REGEX)] = None,
        last_seq: Annotated[int | None, Query(ge=0, le=U32)] = None,
        last_reason: Annotated[str | None, Query(pattern=registry.REASON_PATTERN.pattern)] = None,
    ) -> Response:
        """The device's periodic check: 200 + signed manifest of its assigned release, or 204."""
        ctx = _ctx(request)
        with ctx.session() as session:
            device = _authenticate(ctx, session, request, device_id)
            query = {"version": version, "secure_version": secure_version, "slot": slot, "state": state}
            registry.reconcile_version_check(device, query, ctx.now())
            release = registry.offered_release(device)
            config = registry.config_header(registry.merged_config(session, device))
            headers = {"X-Device-Config": config} if config else {}
            if release is None:
                ctx.metrics.version_checks.labels(result="none").inc()
                return Response(status_code=204, headers=headers)
            registry.note_offer_taken(device, release, ctx.now())
            headers["X-Firmware-Url"] = firmware_url(ctx.settings, release.sha256, device.id)
            ctx.metrics.version_checks.labels(result="offer").inc()
            return Response(release.manifest, media_type="text/plain; charset=utf-8", headers=headers)

    version_responses = {
        200: {
            "description": "the signed manifest",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        204: {"description": "nothing to do"},
    }
    for path in ("/api/ota/version", "/version"):
        app.add_api_route(
            path,
            version_check,
            methods=["GET"],
            response_class=Response,
            responses=version_responses,
            tags=["ota"],
            name=f"version_check{path.replace('/', '_')}",
        )

    firmware_responses = {
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        206: {"description": "partial content (Range)"},
        416: {"description": "range not satisfiable"},
    }

    @app.get(
        "/api/ota/firmware/{sha256}", response_class=Response, responses=firmware_responses, tags=["ota"]
    )
    def firmware(request: Request, sha256: str) -> Response:
        """Streams a stored release image (Range → 206, unsatisfiable → 416, ETag = sha256)."""
        ctx = _ctx(request)
        with ctx.session() as session:
            device = _authenticate(ctx, session, request, None)
            if not re.match(SHA256_REGEX, sha256):
                raise HTTPException(404, "no such firmware")
            releases = session.scalars(select(Release).where(Release.sha256 == sha256))
            release = next((r for r in releases if registry.may_download(device, r)), None)
            if release is None:  # unknown, or not this device's: the same answer
                raise HTTPException(404, "no such firmware")
            offered = registry.offered_release(device)
            if offered is not None and offered.sha256 == sha256:
                registry.note_offer_taken(device, offered, ctx.now())
            return _firmware_response(ctx, release, device.id, request.app.state.download_slots)

    def firmware_assigned(request: Request, device_id: DeviceIdQuery = None) -> Response:
        """The image of the release assigned to this device (the seed's HTTP-only flow); Range works."""
        ctx = _ctx(request)
        with ctx.session() as session:
            device = _authenticate(ctx, session, request, device_id)
            release = registry.offered_release(device)
            if release is None:
                raise HTTPException(404, "no update assigned to this device")
            registry.note_offer_taken(device, release, ctx.now())
            return _firmware_response(ctx, release, device.id, request.app.state.download_slots)

    for path in ("/api/ota/firmware", "/firmware/latest"):
        app.add_api_route(
            path,
            firmware_assigned,
            methods=["GET"],
            response_class=Response,
            responses=firmware_responses,
            tags=["ota"],
            name=f"firmware_assigned{path.replace('/', '_')}",
        )

    @app.post(
        "/api/ota/status",
        response_model=StatusAck,
        tags=["ota"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": StatusReportIn.model_json_schema()}},
            }
        },
    )
    async def status(request: Request) -> StatusAck:
        """An OTA state report; idempotent by (device_id, seq)."""
        ctx = _ctx(request)
        body = await read_limited_body(request, ctx.settings.max_json_body_bytes)

        def store() -> StatusAck:
            try:
                with ctx.session() as session:
                    device = _authenticate(ctx, session, request, None)
                    report = parse_json_model(body, StatusReportIn, request)
                    if report.device_id != device.id:
                        raise HTTPException(403, "this token belongs to another device")
                    if registry.record_status(session, device, report.model_dump(), ctx.now()):
                        ctx.metrics.status_reports.labels(state=report.state).inc()
            except IntegrityError:
                pass  # the same (device, seq) committed concurrently: already stored
            return StatusAck(ack_seq=report.seq)

        return await run_in_threadpool(store)

    @app.post(
        "/api/devices/{device_id}/heartbeat",
        response_model=Ok,
        tags=["health"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": HeartbeatIn.model_json_schema()}},
            }
        },
    )
    async def heartbeat(request: Request, device_id: str) -> Ok:
        """The HTTP-only architecture's heartbeat (same effect as MQTT csi/<id>/heartbeat)."""
        ctx = _ctx(request)
        body = await read_limited_body(request, ctx.settings.max_json_body_bytes)

        def store() -> Ok:
            with ctx.session() as session:
                device = _authenticate(ctx, session, request, device_id)
                beat = parse_json_model(body, HeartbeatIn, request)
                if beat.device_id is not None and beat.device_id != device.id:
                    raise HTTPException(403, "this token belongs to another device")
                registry.record_heartbeat(session, device, beat.model_dump(), ctx.now())
            ctx.metrics.heartbeats.labels(transport="http").inc()
            return Ok()

        return await run_in_threadpool(store)

    @app.post(
        "/api/csi/data",
        response_model=Ok,
        tags=["csi"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def csi_data(request: Request, device_id: DeviceIdQuery = None) -> JSONResponse:
        """CSI frames over HTTP (docs/csi-frame.md); kept by the CSI sink byte for byte."""
        ctx = _ctx(request)
        body = await read_limited_body(request, ctx.settings.max_csi_body_bytes)
        if not body:
            raise HTTPException(422, "empty CSI payload")

        def store() -> str:
            with ctx.session() as session:
                return _authenticate(ctx, session, request, device_id).id

        owner = await run_in_threadpool(store)
        try:
            await run_in_threadpool(ctx.csi_sink.write, owner, body)
        except OSError as exc:  # disk full or file size limit: nothing was stored, the device retries
            raise HTTPException(507, f"CSI storage unavailable: {exc.strerror or exc}") from None
        ctx.csi_counters.add(owner, len(body))
        ctx.metrics.csi_messages.labels(transport="http").inc()
        return JSONResponse({"ok": True})

    return app
