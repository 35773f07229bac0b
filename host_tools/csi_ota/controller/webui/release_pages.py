"""Release pages: the list, one release (manifest fields, key id, size against the OTA slot), upload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import select

from csi_ota.controller import release_intake, releases
from csi_ota.controller.management_api import RELEASE_REF_REGEX, find_release_ref
from csi_ota.controller.models import Release
from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.controller.webui import session
from csi_ota.controller.webui.render import library_error, page
from csi_ota.errors import CsiOtaError
from csi_ota.manifest import parse_manifest
from csi_ota.release import DEFAULT_SLOT_SIZE_BYTES

Viewer = Annotated[session.UiUser, Depends(session.require("viewer"))]
OperatorChange = Annotated[session.UiUser, Depends(session.require_change("operator"))]


def manifest_fields(text: str) -> dict[str, object]:
    """The signed manifest's fields in writer order (the stored bytes verified at upload)."""
    try:
        return parse_manifest(text.encode("utf-8")).manifest.as_dict()
    except (CsiOtaError, ValueError):
        return {}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/releases", response_class=HTMLResponse)
    def release_list(request: Request, user: Viewer, include_retired: bool = False) -> HTMLResponse:
        with request.app.state.ctx.session() as db:
            statement = select(Release)
            if not include_retired:
                statement = statement.where(Release.retired.is_(False))
            rows = [releases.release_to_dict(r) for r in releases.sorted_releases(db.scalars(statement))]
        return page(
            request,
            "releases.html",
            user=user,
            releases=rows,
            include_retired=include_retired,
            slot_bytes=DEFAULT_SLOT_SIZE_BYTES,
            max_upload_bytes=request.app.state.ctx.settings.firmware_max_size_bytes,
        )

    @router.get("/releases/{ref}", response_class=HTMLResponse)
    def release_detail(
        ref: Annotated[str, Path(pattern=RELEASE_REF_REGEX)], request: Request, user: Viewer
    ) -> HTMLResponse:
        try:
            with request.app.state.ctx.session() as db:
                detail = releases.release_detail(db, find_release_ref(db, ref))
        except (NotFound, Conflict) as exc:
            return library_error(request, exc)
        return page(
            request,
            "release.html",
            user=user,
            release=detail,
            fields=manifest_fields(detail["manifest"]),
            slot_bytes=DEFAULT_SLOT_SIZE_BYTES,
        )

    @router.post("/releases/upload")
    async def upload(request: Request, user: OperatorChange) -> JSONResponse:
        """The API's upload (same intake and checks), signed in by cookie; answers JSON for upload.js."""
        result = await release_intake.receive_release(request.app.state.ctx, request, user.actor)
        return JSONResponse({**result, "location": f"/ui/releases/{result['id']}"}, status_code=201)

    return router
