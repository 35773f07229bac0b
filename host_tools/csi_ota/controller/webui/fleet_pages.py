"""Fleet pages: counts by version, health and OTA state; the filterable device table; device detail."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from csi_ota.controller import audit, registry
from csi_ota.controller.models import AuditEntry
from csi_ota.controller.problems import NotFound
from csi_ota.controller.webui import session
from csi_ota.controller.webui.render import is_htmx, library_error, page

PAGE_SIZE = 50
REPORTS_SHOWN = 100
AUDIT_SHOWN = 100
Health = Literal["unknown", "healthy", "degraded", "offline"]
# Empty form fields arrive as "": accepted and ignored.
Seconds = Annotated[str | None, Query(pattern=r"^[0-9]{0,9}$")]
Viewer = Annotated[session.UiUser, Depends(session.require("viewer"))]


def _rollout_rows(db, device_id: str) -> list[dict[str, Any]]:
    """The device's rollout memberships (rolled back, failed, …), if the rollout engine is installed."""
    try:
        from csi_ota.controller.rollout.models import Rollout, RolloutDevice
    except ModuleNotFoundError:
        return []
    rows = db.execute(
        select(RolloutDevice, Rollout.name, Rollout.state)
        .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
        .where(RolloutDevice.device_id == device_id)
        .order_by(RolloutDevice.rollout_id.desc())
        .limit(20)
    )
    return [
        {
            "rollout_id": rd.rollout_id,
            "name": name,
            "rollout_state": state,
            "state": rd.state,
            "reason": rd.reason,
            "attempts": rd.attempts,
            "from_version": rd.from_version,
            "at": rd.decided_real or rd.offered_real,
        }
        for rd, name, state in rows
    ]


def timeline(device: dict[str, Any], reports, entries, rollouts) -> list[dict[str, Any]]:
    """Reports, rollout decisions, management actions and the last heartbeat, newest first."""
    items: list[dict[str, Any]] = []
    for r in reports:
        items.append({"at": r.received_at, "kind": "report", "report": registry.report_to_dict(r)})
    for e in entries:
        if e.action != "device.ota_state":  # the reports above say the same
            items.append({"at": e.at, "kind": "audit", "entry": audit.entry_to_dict(e)})
    for row in rollouts:
        if row["at"] is not None:
            items.append({"at": row["at"], "kind": "rollout", "rollout": row})
    if device["last_heartbeat"]:
        at = dt.datetime.fromisoformat(device["last_heartbeat"].replace("Z", "+00:00"))
        items.append({"at": at, "kind": "heartbeat"})
    return sorted(items, key=lambda item: item["at"], reverse=True)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    def fleet_view(request: Request, filters: dict[str, Any], page_number: int) -> dict[str, Any]:
        ctx = request.app.state.ctx
        interval_s = ctx.settings.health_check_interval_s
        now = ctx.now()
        with ctx.session() as db:
            counts = registry.fleet_counts(db, now, interval_s)
            devices, matching = registry.list_devices(
                db,
                now=now,
                health_check_interval_s=interval_s,
                limit=PAGE_SIZE,
                offset=(page_number - 1) * PAGE_SIZE,
                **filters,
            )
            rows = [registry.device_to_dict(d, now, interval_s) for d in devices]
        return {
            "counts": counts,
            "total": sum(counts["health"].values()),
            "devices": rows,
            "filters": filters,
            "page_number": page_number,
            "matching": matching,
            "has_next": page_number * PAGE_SIZE < matching,
        }

    @router.get("/", response_class=HTMLResponse)
    def fleet(
        request: Request,
        user: Viewer,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        version: Annotated[str | None, Query(max_length=31)] = None,
        health: Annotated[Health | Literal[""] | None, Query()] = None,
        seen_within_s: Seconds = None,
        not_seen_within_s: Seconds = None,
        page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
    ) -> HTMLResponse:
        filters = {
            "tag": tag or None,
            "version": version or None,
            "health": health or None,
            "seen_within_s": int(seen_within_s) if seen_within_s else None,
            "not_seen_within_s": int(not_seen_within_s) if not_seen_within_s else None,
        }
        view = fleet_view(request, filters, page_number)
        template = "_fleet_live.html" if is_htmx(request) else "fleet.html"
        return page(request, template, user=user, **view)

    @router.get("/devices/{device_id}", response_class=HTMLResponse)
    def device_detail(device_id: str, request: Request, user: Viewer) -> HTMLResponse:
        ctx = request.app.state.ctx
        try:
            if not registry.DEVICE_ID_PATTERN.match(device_id):
                raise NotFound(f"no device {device_id!r}")
            with ctx.session() as db:
                device = registry.get_device(db, device_id)
                info = registry.device_to_dict(device, ctx.now(), ctx.settings.health_check_interval_s)
                effective = registry.merged_config(db, device)
                reports = registry.latest_reports(db, device_id, REPORTS_SHOWN)
                entries = list(
                    db.scalars(
                        select(AuditEntry)
                        .where(AuditEntry.target == f"device:{device_id}")
                        .order_by(AuditEntry.id.desc())
                        .limit(AUDIT_SHOWN)
                    )
                )
                items = timeline(info, reports, entries, _rollout_rows(db, device_id))
        except NotFound as exc:
            return library_error(request, exc)
        template = "_device_live.html" if is_htmx(request) else "device.html"
        return page(request, template, user=user, device=info, effective_config=effective, timeline=items)

    return router
