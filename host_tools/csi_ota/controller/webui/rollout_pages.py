"""Rollout pages: the list, the live view (stage progress, gate decisions, halt, rollback) and controls.

Controls call the rollout service's own functions (pause, resume, abort,
promote, exclude) with the engine's clock, as the API does; they need the
operator role, a CSRF token and the browser's confirmation (hx-confirm).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse

from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.controller.webui import session
from csi_ota.controller.webui.render import is_htmx, library_error, page
from csi_ota.errors import CsiOtaError

MAX_ID = 2**31 - 1
DEVICES_SHOWN = 200
EVENTS_SHOWN = 200
RolloutId = Annotated[int, Path(ge=1, le=MAX_ID)]
Viewer = Annotated[session.UiUser, Depends(session.require("viewer"))]
OperatorChange = Annotated[session.UiUser, Depends(session.require_change("operator"))]
# Device states in the order the progress bars stack them.
BAR_STATES = (
    "succeeded",
    "rolled_back",
    "offered",
    "rolling_back",
    "pending",
    "failed",
    "rollback_failed",
    "not_reached",
    "excluded",
)
CONTROLS = ("pause", "resume", "promote", "abort")


def _service():
    from csi_ota.controller.rollout import service

    return service


def bar_segments(counts: dict[str, int], members: int) -> list[dict[str, object]]:
    """Stacked-bar segments (x, width in % of members) per device state."""
    segments, x = [], 0.0
    for state in BAR_STATES:
        count = counts.get(state, 0)
        if count and members:
            width = 100.0 * count / members
            segments.append({"state": state, "count": count, "x": round(x, 3), "width": round(width, 3)})
            x += width
    return segments


def allowed_controls(state: str) -> list[str]:
    return {
        "active": ["pause", "promote", "abort"],
        "paused": ["resume", "promote", "abort"],
        "halted": ["resume", "abort"],
        "rolling_back": ["abort"],
    }.get(state, [])


def build_router() -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/rollouts", response_class=HTMLResponse)
    def rollout_list(request: Request, user: Viewer) -> HTMLResponse:
        service = _service()
        with request.app.state.ctx.session() as db:
            rows = [service.rollout_summary(db, r) for r in service.list_rollouts(db, limit=500)]
        for row in rows:
            row["segments"] = bar_segments(row["counts"], row["devices"])
        template = "_rollouts_live.html" if is_htmx(request) else "rollouts.html"
        return page(request, template, user=user, rollouts=rows)

    @router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
    def rollout_detail(rollout_id: RolloutId, request: Request, user: Viewer) -> HTMLResponse:
        service = _service()
        try:
            with request.app.state.ctx.session() as db:
                detail = service.rollout_detail(
                    db, service.get_rollout(db, rollout_id), event_limit=EVENTS_SHOWN
                )
                devices = service.rollout_devices(db, rollout_id, limit=DEVICES_SHOWN)
        except NotFound as exc:
            return library_error(request, exc)
        detail["segments"] = bar_segments(detail["counts"], detail["devices"])
        for stage in detail["stages"]:
            stage["segments"] = bar_segments(stage["counts"], stage["members"])
        template = "_rollout_live.html" if is_htmx(request) else "rollout.html"
        return page(
            request,
            template,
            user=user,
            rollout=detail,
            devices=devices,
            controls=allowed_controls(detail["state"]),
            live=detail["state"] in ("active", "paused", "halted", "rolling_back"),
        )

    @router.post("/rollouts/{rollout_id}/{action}", response_class=HTMLResponse)
    async def control(
        rollout_id: RolloutId,
        action: Annotated[str, Path(pattern="^(pause|resume|promote|abort|exclude)$")],
        request: Request,
        user: OperatorChange,
    ) -> HTMLResponse:
        service = _service()
        form = await session.form_of(request) if action == "exclude" else {}
        clock = request.app.state.rollout_engine.clock
        try:
            with request.app.state.ctx.session() as db:
                if action == "exclude":
                    device_id = form.get("device_id", "").strip()
                    if not device_id or len(device_id) > 31:
                        raise CsiOtaError("give the id of a device in this rollout")
                    service.exclude(db, rollout_id, device_id, actor=user.actor, clock=clock)
                    message = f"device {device_id} excluded from rollout {rollout_id}"
                else:
                    getattr(service, action)(db, rollout_id, actor=user.actor, clock=clock)
                    message = f"rollout {rollout_id}: {action} done"
        except (NotFound, Conflict, CsiOtaError) as exc:
            return library_error(request, exc)
        response = page(request, "_message.html", user=user, title="Done", message=message, ok=True)
        response.headers["HX-Trigger"] = "rollout-changed"
        return response

    return router
