"""The audit log page (filters, pages by id) and its JSON Lines export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from csi_ota.controller import audit
from csi_ota.controller.webui import session
from csi_ota.controller.webui.render import library_error, page
from csi_ota.errors import CsiOtaError

PAGE_SIZE = 100
EXPORT_MAX = 1_000_000
Text = Annotated[str | None, Query(max_length=128)]
Viewer = Annotated[session.UiUser, Depends(session.require("viewer"))]


def _filters(actor, action, target, since, until) -> dict:
    return {
        "actor": actor or None,
        "action": action or None,
        "target": target or None,
        "since": audit.parse_time(since or None, "since"),
        "until": audit.parse_time(until or None, "until"),
    }


def build_router() -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/audit", response_class=HTMLResponse)
    def audit_log(
        request: Request,
        user: Viewer,
        actor: Text = None,
        action: Text = None,
        target: Text = None,
        since: Text = None,
        until: Text = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> HTMLResponse:
        params = {"actor": actor, "action": action, "target": target, "since": since, "until": until}
        try:
            filters = _filters(actor, action, target, since, until)
        except CsiOtaError as exc:
            return library_error(request, exc)
        with request.app.state.ctx.session() as db:
            entries = audit.query(db, after_id=after_id, limit=PAGE_SIZE + 1, **filters)
            rows = [audit.entry_to_dict(e) for e in entries[:PAGE_SIZE]]
        return page(
            request,
            "audit.html",
            user=user,
            entries=rows,
            params=params,
            after_id=after_id,
            next_after_id=rows[-1]["id"] if len(entries) > PAGE_SIZE else None,
        )

    @router.get("/audit/export")
    def audit_export(
        request: Request,
        user: Viewer,
        actor: Text = None,
        action: Text = None,
        target: Text = None,
        since: Text = None,
        until: Text = None,
    ):
        try:
            filters = _filters(actor, action, target, since, until)
        except CsiOtaError as exc:
            return library_error(request, exc)
        lines = audit.export_json_lines(request.app.state.ctx.session, limit=EXPORT_MAX, **filters)
        return StreamingResponse(
            lines,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="csi-ota-audit.jsonl"'},
        )

    return router
