"""The management API (port 8081): releases, device registry, batch operations, audit, admins, metrics.

Every endpoint except /healthz and /metrics needs an admin token
(Authorization: Bearer). Roles: ``viewer`` reads, ``operator`` changes
releases and devices, ``admin`` also manages admin users, decommissions and
exports credentials. Device tokens are unknown here (401).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csi_ota.controller import ADMIN_ROLES, audit, registry, release_intake, releases
from csi_ota.controller import admin as admin_lib
from csi_ota.controller.context import ControllerContext
from csi_ota.controller.httputil import install_error_handlers, parse_json_model, read_limited_body
from csi_ota.controller.models import AdminUser, Device, Release, utcnow
from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.controller.request_guard import install_request_guard
from csi_ota.controller.tokens import bearer_token
from csi_ota.errors import CsiOtaError

MANIFEST_HEADER = release_intake.MANIFEST_HEADER
TOTAL_COUNT_HEADER = "X-Total-Count"  # list endpoints: rows matching before limit/offset
DEVICE_ID_REGEX = registry.DEVICE_ID_PATTERN.pattern
TAG_REGEX = registry.TAG_PATTERN.pattern
RELEASE_REF_REGEX = r"^[0-9A-Za-z.+-]{1,32}$"
MAX_LIST_LIMIT = 10_000
MAX_BATCH_IDS = 10_000
MANAGEMENT_BODY_MAX_BYTES = 1024 * 1024  # any JSON body (a batch of 10,000 ids fits)
WEB_UI_PREFIX = "/ui"  # the web UI authenticates its own requests (cookie sign-in, CSRF)
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}
AuditText = Annotated[str | None, Query(max_length=128)]
AUDIT_PAGE = 1000


# --------------------------------------------------------------------------- request bodies


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class DeviceRegisterIn(Strict):
    device_id: str = Field(pattern=DEVICE_ID_REGEX)
    tags: list[Annotated[str, Field(pattern=TAG_REGEX)]] = Field(default_factory=list, max_length=32)


class DeviceTokenOut(BaseModel):
    device_id: str
    token: str


class TagsIn(Strict):
    add: list[Annotated[str, Field(pattern=TAG_REGEX)]] = Field(default_factory=list, max_length=32)
    remove: list[Annotated[str, Field(pattern=TAG_REGEX)]] = Field(default_factory=list, max_length=32)


class ConfigIn(Strict):
    config: dict[str, str | int | bool] | None = None


class AssignmentIn(Strict):
    release: str | None = Field(
        None, pattern=RELEASE_REF_REGEX, description="release id or version; null clears"
    )


class Selection(Strict):
    device_ids: list[Annotated[str, Field(pattern=DEVICE_ID_REGEX)]] | None = Field(
        None, max_length=MAX_BATCH_IDS
    )
    tag: str | None = Field(None, pattern=TAG_REGEX)
    version: str | None = Field(None, pattern=registry.VERSION_TEXT_PATTERN.pattern)
    health: Literal["unknown", "healthy", "degraded", "offline"] | None = None


class BatchIn(Strict):
    selection: Selection
    action: Literal["assign", "config", "revoke"]
    release: str | None = Field(None, pattern=RELEASE_REF_REGEX)
    config: dict[str, str | int | bool] | None = None


class BatchOut(BaseModel):
    action: str
    matched: int
    device_ids: list[str]


class AdminUserIn(Strict):
    name: str = Field(pattern=admin_lib.ADMIN_NAME_PATTERN)
    role: Literal[ADMIN_ROLES]  # type: ignore[valid-type]


class AdminTokenOut(BaseModel):
    name: str
    role: str
    token: str


class Ok(BaseModel):
    ok: bool = True


# --------------------------------------------------------------------------- auth


class Caller:
    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


def _ctx(request: Request) -> ControllerContext:
    return request.app.state.ctx


def require(role: str):
    """A dependency admitting admin tokens whose role is at least ``role``."""

    def dependency(request: Request) -> Caller:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise HTTPException(401, "unauthorized", headers=UNAUTHORIZED_HEADERS)
        with _ctx(request).session() as session:
            user = admin_lib.authenticate_admin(session, token)
            if user is None:
                raise HTTPException(401, "unauthorized", headers=UNAUTHORIZED_HEADERS)
            caller = Caller(user.name, user.role)
        if not admin_lib.role_allows(caller.role, role):
            raise HTTPException(403, f"needs the {role} role (you are {caller.role})")
        return caller

    return dependency


def admin_token_valid(ctx: ControllerContext):
    """For the request guard: does ``token`` belong to an active admin user (any role)?"""

    def check(token: str) -> bool:
        with ctx.session() as session:
            return admin_lib.authenticate_admin(session, token) is not None

    return check


def management_body_limit(ctx: ControllerContext):
    """Bytes a management request body may have: an image for uploads, MANAGEMENT_BODY_MAX_BYTES otherwise."""
    upload_limit = ctx.settings.firmware_max_size_bytes

    def limit_for(path: str) -> int:
        if path.rstrip("/") == "/api/releases":
            return upload_limit
        if path.startswith(WEB_UI_PREFIX + "/"):  # the web UI's forms include release uploads
            return upload_limit + MANAGEMENT_BODY_MAX_BYTES
        return MANAGEMENT_BODY_MAX_BYTES

    return limit_for


Viewer = Annotated[Caller, Depends(require("viewer"))]
Operator = Annotated[Caller, Depends(require("operator"))]
Admin = Annotated[Caller, Depends(require("admin"))]


def find_release_ref(session: Session, ref: str) -> Release:
    """A release by numeric id or by version (409 if that version exists in several projects).

    A version names the forward release; rollback releases of it are reached by id.
    """
    if ref.isdigit():
        release = session.get(Release, int(ref))
        if release is None:
            raise NotFound(f"no release with id {ref}")
        return release
    matches = list(
        session.scalars(select(Release).where(Release.version == ref, Release.rollback.is_(False)))
    )
    if not matches:
        raise NotFound(f"no release with version {ref!r}")
    if len(matches) > 1:
        raise Conflict(f"version {ref!r} exists in several projects; use the release id")
    return matches[0]


def _check_may_assign(caller: Caller, release: Release | None) -> None:
    """A signed rollback release downgrades devices: assigning one by hand needs the admin role (H3)."""
    if release is not None and release.rollback and not admin_lib.role_allows(caller.role, "admin"):
        raise HTTPException(
            403, f"release {release.id} is a signed rollback: assigning it needs the admin role"
        )


def _select_for_batch(ctx: ControllerContext, session: Session, selection: Selection) -> list[Device]:
    if (
        selection.device_ids is None
        and selection.tag is None
        and selection.version is None
        and selection.health is None
    ):
        raise CsiOtaError("selection is empty: give device_ids, tag, version or health")
    statement = registry.select_devices(
        tag=selection.tag,
        version=selection.version,
        health=selection.health,
        device_ids=selection.device_ids,
        now=ctx.now(),
        health_check_interval_s=ctx.settings.health_check_interval_s,
    ).with_for_update(of=Device)
    devices = registry.filter_tag(session.scalars(statement), selection.tag)
    if selection.device_ids is not None:
        missing = sorted(set(selection.device_ids) - {d.id for d in devices})
        if missing:
            raise NotFound(f"unknown or decommissioned devices: {', '.join(missing[:10])}")
    return devices


def _parse_time(value: str | None, name: str) -> dt.datetime | None:
    try:
        return audit.parse_time(value, name)
    except CsiOtaError as exc:
        raise HTTPException(422, exc.message) from None


# --------------------------------------------------------------------------- the app


def create_management_app(ctx: ControllerContext) -> FastAPI:
    app = FastAPI(
        title="csi-ota management API",
        version="1",
        description="Port 8081: releases, devices, batch operations, audit log, admin users (docs/controller.md).",
        # The API description and its docs page need a token too (below): they map the admin surface.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    install_request_guard(
        app,
        limit_for=management_body_limit(ctx),
        authenticate=admin_token_valid(ctx),
        auth_exempt_prefixes=(WEB_UI_PREFIX,),
    )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(caller: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs_page(caller: Viewer) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} (needs a token)")

    interval_s = ctx.settings.health_check_interval_s

    @app.get("/healthz", response_model=Ok, tags=["health"])
    def healthz() -> Ok:
        return Ok()

    @app.get("/metrics", response_class=Response, tags=["health"])
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/whoami", tags=["admin"])
    def whoami(caller: Viewer) -> dict[str, str]:
        return {"name": caller.name, "role": caller.role}

    # ----------------------------------------------------------------- releases

    @app.post(
        "/api/releases",
        status_code=201,
        tags=["releases"],
        openapi_extra={
            "parameters": [
                {
                    "name": MANIFEST_HEADER,
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "the signed manifest, base64",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
        },
    )
    async def upload_release(request: Request, caller: Operator) -> JSONResponse:
        """Upload an image (body) with its signed manifest (header, base64). Stored only if it verifies."""
        return JSONResponse(await release_intake.receive_release(ctx, request, caller.actor), status_code=201)

    @app.get("/api/releases", tags=["releases"])
    def list_releases(caller: Viewer, include_retired: bool = False) -> list[dict[str, Any]]:
        """All releases in semantic-version order."""
        with ctx.session() as session:
            statement = select(Release)
            if not include_retired:
                statement = statement.where(Release.retired.is_(False))
            return [releases.release_to_dict(r) for r in releases.sorted_releases(session.scalars(statement))]

    @app.get("/api/releases/{ref}", tags=["releases"])
    def show_release(
        ref: Annotated[str, PathParam(pattern=RELEASE_REF_REGEX)], caller: Viewer
    ) -> dict[str, Any]:
        with ctx.session() as session:
            return releases.release_detail(session, find_release_ref(session, ref))

    @app.post("/api/releases/{ref}/retire", tags=["releases"])
    def retire_release(
        ref: Annotated[str, PathParam(pattern=RELEASE_REF_REGEX)], caller: Operator
    ) -> dict[str, Any]:
        """A retired release is no longer offered (assignments to it answer 204) nor assignable."""
        with ctx.session() as session:
            release = find_release_ref(session, ref)
            if not release.retired:
                release.retired = True
                release.retired_at = utcnow()
                audit.record(
                    session, caller.actor, "release.retire", f"release:{release.id}", version=release.version
                )
            return releases.release_to_dict(release)

    # ----------------------------------------------------------------- devices

    @app.post("/api/devices", status_code=201, response_model=DeviceTokenOut, tags=["devices"])
    async def register_device(request: Request, caller: Operator) -> DeviceTokenOut:
        """Registers a device; its token is in this response only."""
        body = parse_json_model(await read_limited_body(request, 64 * 1024), DeviceRegisterIn, request)

        def work() -> DeviceTokenOut:
            try:
                with ctx.session() as session:
                    token = registry.register_device(
                        session,
                        body.device_id,
                        tags=body.tags,
                        actor=caller.actor,
                        reserved_ids=ctx.settings.reserved_device_ids,
                    )
            except IntegrityError:
                raise Conflict(f"device {body.device_id!r} already exists") from None
            ctx.credentials_changed()
            return DeviceTokenOut(device_id=body.device_id, token=token)

        return await run_in_threadpool(work)

    @app.get("/api/devices", tags=["devices"])
    def list_devices(
        caller: Viewer,
        response: Response,
        tag: Annotated[str | None, Query(pattern=TAG_REGEX)] = None,
        version: Annotated[str | None, Query(pattern=registry.VERSION_TEXT_PATTERN.pattern)] = None,
        health: Literal["unknown", "healthy", "degraded", "offline"] | None = None,
        seen_within_s: Annotated[int | None, Query(ge=0, le=10**9)] = None,
        not_seen_within_s: Annotated[int | None, Query(ge=0, le=10**9)] = None,
        include_decommissioned: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 1000,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> list[dict[str, Any]]:
        """Devices matching every filter, by id."""
        now = ctx.now()
        with ctx.session() as session:
            devices, total = registry.list_devices(
                session,
                now=now,
                health_check_interval_s=interval_s,
                limit=limit,
                offset=offset,
                tag=tag,
                version=version,
                health=health,
                seen_within_s=seen_within_s,
                not_seen_within_s=not_seen_within_s,
                include_decommissioned=include_decommissioned,
            )
            # How many match before limit/offset, so a client can say "showing 1000 of 1003".
            response.headers[TOTAL_COUNT_HEADER] = str(total)
            return [registry.device_to_dict(d, now, interval_s) for d in devices]

    def _device_path(device_id: str) -> str:
        if not registry.DEVICE_ID_PATTERN.match(device_id):
            raise NotFound(f"no device {device_id!r}")
        return device_id

    @app.get("/api/devices/{device_id}", tags=["devices"])
    def show_device(device_id: str, caller: Viewer) -> dict[str, Any]:
        with ctx.session() as session:
            device = registry.get_device(session, _device_path(device_id))
            result = registry.device_to_dict(device, ctx.now(), interval_s)
            result["effective_config"] = registry.merged_config(session, device)
            return result

    @app.get("/api/devices/{device_id}/reports", tags=["devices"])
    def device_reports(
        device_id: str, caller: Viewer, limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100
    ) -> list[dict[str, Any]]:
        """The device's latest status reports, newest first."""
        with ctx.session() as session:
            registry.get_device(session, _device_path(device_id))
            return [registry.report_to_dict(r) for r in registry.latest_reports(session, device_id, limit)]

    @app.post("/api/devices/{device_id}/tags", tags=["devices"])
    async def tag_device(device_id: str, request: Request, caller: Operator) -> dict[str, Any]:
        body = parse_json_model(await read_limited_body(request, 64 * 1024), TagsIn, request)

        def work() -> dict[str, Any]:
            with ctx.session() as session:
                tags = registry.set_tags(
                    session, _device_path(device_id), add=body.add, remove=body.remove, actor=caller.actor
                )
            return {"device_id": device_id, "tags": tags}

        return await run_in_threadpool(work)

    @app.post("/api/devices/{device_id}/token/rotate", response_model=DeviceTokenOut, tags=["devices"])
    def rotate_device_token(device_id: str, caller: Operator) -> DeviceTokenOut:
        """A new token (shown once); the old one stops working at once."""
        with ctx.session() as session:
            token = registry.rotate_token(session, _device_path(device_id), actor=caller.actor)
        ctx.credentials_changed()
        return DeviceTokenOut(device_id=device_id, token=token)

    @app.post("/api/devices/{device_id}/token/revoke", response_model=Ok, tags=["devices"])
    def revoke_device_token(device_id: str, caller: Operator) -> Ok:
        with ctx.session() as session:
            registry.revoke_token(session, _device_path(device_id), actor=caller.actor)
        ctx.credentials_changed()
        return Ok()

    @app.post("/api/devices/{device_id}/decommission", response_model=Ok, tags=["devices"])
    def decommission_device(device_id: str, caller: Admin) -> Ok:
        """Revokes the token, clears the assignment and hides the device from lists (history is kept)."""
        with ctx.session() as session:
            registry.decommission(session, _device_path(device_id), actor=caller.actor)
        ctx.credentials_changed()
        return Ok()

    @app.put("/api/devices/{device_id}/config", tags=["devices"])
    async def set_device_config(device_id: str, request: Request, caller: Operator) -> dict[str, Any]:
        """Per-device configuration pushed with the version check (null or {} clears it)."""
        body = parse_json_model(await read_limited_body(request, 64 * 1024), ConfigIn, request)

        def work() -> dict[str, Any]:
            with ctx.session() as session:
                device = registry.get_device(session, _device_path(device_id))
                registry.set_device_config(session, device, body.config, actor=caller.actor)
                return {
                    "device_id": device_id,
                    "config": device.config,
                    "config_revision": device.config_revision,
                }

        return await run_in_threadpool(work)

    @app.put("/api/devices/{device_id}/assignment", tags=["devices"])
    async def assign_device(device_id: str, request: Request, caller: Operator) -> dict[str, Any]:
        """The release this device's version check offers (null clears)."""
        body = parse_json_model(await read_limited_body(request, 64 * 1024), AssignmentIn, request)

        def work() -> dict[str, Any]:
            with ctx.session() as session:
                device = registry.get_device(session, _device_path(device_id), for_update=True)
                release = None if body.release is None else find_release_ref(session, body.release)
                _check_may_assign(caller, release)
                registry.assign_release(session, device, release, actor=caller.actor)
                return registry.device_to_dict(device, ctx.now(), interval_s)

        return await run_in_threadpool(work)

    @app.get("/api/tags/{tag}/config", tags=["devices"])
    def get_tag_config(tag: str, caller: Viewer) -> dict[str, Any]:
        from csi_ota.controller.models import TagConfig

        with ctx.session() as session:
            row = session.get(TagConfig, tag) if registry.TAG_PATTERN.match(tag) else None
            if row is None:
                raise NotFound(f"no configuration for tag {tag!r}")
            return {"tag": tag, "config": row.config, "revision": row.revision}

    @app.put("/api/tags/{tag}/config", tags=["devices"])
    async def set_tag_config(tag: str, request: Request, caller: Operator) -> dict[str, Any]:
        """Configuration for every device with this tag (device config wins; null or {} clears)."""
        body = parse_json_model(await read_limited_body(request, 64 * 1024), ConfigIn, request)

        def work() -> dict[str, Any]:
            with ctx.session() as session:
                registry.set_tag_config(session, tag, body.config, actor=caller.actor)
            return {"tag": tag, "config": body.config or None}

        return await run_in_threadpool(work)

    # ----------------------------------------------------------------- batch

    @app.post("/api/batch", response_model=BatchOut, tags=["devices"])
    async def batch(request: Request, caller: Operator) -> BatchOut:
        """One action on every selected device, in one transaction (all or nothing)."""
        body = parse_json_model(await read_limited_body(request, 1024 * 1024), BatchIn, request)

        def work() -> BatchOut:
            with ctx.session() as session:
                devices = _select_for_batch(ctx, session, body.selection)
                release = None
                if body.action == "assign" and body.release is not None:
                    release = find_release_ref(session, body.release)
                    _check_may_assign(caller, release)
                if body.action == "config" and body.config:
                    registry.check_config(body.config)
                for device in devices:
                    if body.action == "assign":
                        registry.assign_release(session, device, release, actor=caller.actor)
                    elif body.action == "config":
                        registry.set_device_config(session, device, body.config, actor=caller.actor)
                    else:
                        registry.revoke_token(session, device.id, actor=caller.actor)
                audit.record(session, caller.actor, f"batch.{body.action}", "", devices=len(devices))
                result = BatchOut(
                    action=body.action, matched=len(devices), device_ids=[d.id for d in devices]
                )
            if body.action == "revoke":
                ctx.credentials_changed()
            return result

        return await run_in_threadpool(work)

    # ----------------------------------------------------------------- audit

    def _audit_entries(
        actor: str | None,
        action: str | None,
        target: str | None,
        since: str | None,
        until: str | None,
        after_id: int,
        limit: int,
    ):
        with ctx.session() as session:
            return audit.query(
                session,
                actor=actor,
                action=action,
                target=target,
                since=_parse_time(since, "since"),
                until=_parse_time(until, "until"),
                after_id=after_id,
                limit=limit,
            )

    @app.get("/api/audit", tags=["audit"])
    def list_audit(
        caller: Viewer,
        actor: AuditText = None,
        action: AuditText = None,
        target: AuditText = None,
        since: AuditText = None,
        until: AuditText = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 1000,
    ) -> list[dict[str, Any]]:
        """Audit entries, oldest first (page with after_id)."""
        return [
            audit.entry_to_dict(e)
            for e in _audit_entries(actor, action, target, since, until, after_id, limit)
        ]

    @app.get(
        "/api/audit/export",
        response_class=StreamingResponse,
        tags=["audit"],
        responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
    )
    def export_audit(
        caller: Viewer,
        actor: AuditText = None,
        action: AuditText = None,
        target: AuditText = None,
        since: AuditText = None,
        until: AuditText = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1_000_000)] = 1_000_000,
    ) -> StreamingResponse:
        """The same entries as JSON Lines, read and sent a page at a time (memory stays bounded)."""
        lines = audit.export_json_lines(
            ctx.session,
            after_id=after_id,
            limit=limit,
            page_size=AUDIT_PAGE,
            actor=actor,
            action=action,
            target=target,
            since=_parse_time(since, "since"),
            until=_parse_time(until, "until"),
        )
        return StreamingResponse(lines, media_type="application/x-ndjson")

    # ----------------------------------------------------------------- admin users

    @app.get("/api/admin/users", tags=["admin"])
    def list_admins(caller: Admin) -> list[dict[str, Any]]:
        with ctx.session() as session:
            users = session.scalars(select(AdminUser).order_by(AdminUser.name))
            return [{"name": u.name, "role": u.role, "disabled": u.disabled} for u in users]

    @app.post("/api/admin/users", status_code=201, response_model=AdminTokenOut, tags=["admin"])
    async def create_admin(request: Request, caller: Admin) -> AdminTokenOut:
        """Creates a user (or a new token for an existing one, with this role); the token is shown once."""
        body = parse_json_model(await read_limited_body(request, 64 * 1024), AdminUserIn, request)

        def work() -> AdminTokenOut:
            with ctx.session() as session:
                token = admin_lib.create_admin(session, body.name, body.role, actor=caller.actor)
            return AdminTokenOut(name=body.name, role=body.role, token=token)

        return await run_in_threadpool(work)

    @app.post("/api/admin/users/{name}/revoke", tags=["admin"])
    def revoke_admin(name: str, caller: Admin) -> dict[str, Any]:
        with ctx.session() as session:
            count = admin_lib.revoke_admin_tokens(session, name, actor=caller.actor)
        return {"name": name, "tokens_revoked": count}

    @app.get("/api/mqtt/credentials", tags=["admin"])
    def mqtt_credentials(caller: Admin) -> list[dict[str, str]]:
        """Each active device's Mosquitto password hash (for `csi-ota mqtt-acl`)."""
        with ctx.session() as session:
            rows = registry.mqtt_credentials(session)
        return [{"device_id": device_id, "password_hash": hashed} for device_id, hashed in rows]

    return app
