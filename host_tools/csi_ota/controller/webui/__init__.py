"""The management web UI (port 8081, same process, auth and roles as the management API).

``attach(app)`` adds, under ``/ui``: sign-in/out (this module), Fleet and device
detail (fleet_pages), Releases with upload (release_pages), Rollouts with
operator controls (rollout_pages) and the Audit log with its JSON Lines export
(audit_pages); ``/ui/static`` serves the templates' CSS and JavaScript (htmx,
vendored — no CDN). Pages are server-rendered Jinja2; htmx refreshes the live
parts by polling. Every page calls the same library functions as the API.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from csi_ota.controller.webui import audit_pages, fleet_pages, release_pages, rollout_pages, session
from csi_ota.controller.webui.render import STATIC_DIR, is_htmx, page, ui_error

UI_PREFIX = "/ui"


def _safe_next(value: str | None) -> str:
    """Only a path of this UI (no scheme, no host, no '//')."""
    if value and value.startswith(UI_PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return UI_PREFIX + "/"


def _sign_in_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(UI_PREFIX + "/", status_code=303)

    @app.get(UI_PREFIX, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse(UI_PREFIX + "/", status_code=303)

    @app.get(UI_PREFIX + "/login", include_in_schema=False)
    def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        return page(request, "login.html", next=_safe_next(next), error=None)

    @app.post(UI_PREFIX + "/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        session.check_origin(request)
        form = await session.read_form(request)
        token = form.get("token", "")
        user = await run_in_threadpool(session.sign_in_token, request, token)
        if user is None:
            return page(
                request,
                "login.html",
                status_code=401,
                next=_safe_next(form.get("next")),
                error="That token is unknown or revoked.",
            )
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        session.set_cookie(request, response, token.strip())
        return response

    @app.post(UI_PREFIX + "/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session.check_origin(request)
        response = RedirectResponse(UI_PREFIX + "/login", status_code=303)
        session.clear_cookie(response)
        return response


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(session.SignInRequired)
    async def _sign_in(request: Request, exc: session.SignInRequired) -> Response:
        target = f"{UI_PREFIX}/login?next={request.url.path}"
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        if request.method != "GET":
            return page(
                request, "message.html", status_code=401, title="Signed out", message="Sign in again."
            )
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(session.Refused)
    async def _refused(request: Request, exc: session.Refused) -> Response:
        return ui_error(request, exc.status_code, exc.message)


def attach(app: FastAPI) -> None:
    """Adds the web UI to the management ``app`` (once)."""
    if getattr(app.state, "webui_attached", False):
        return
    app.state.webui_attached = True
    _error_handlers(app)
    _sign_in_routes(app)
    app.mount(UI_PREFIX + "/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    for module in (fleet_pages, release_pages, rollout_pages, audit_pages):
        app.include_router(module.build_router())
