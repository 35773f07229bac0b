"""Jinja2 rendering for the web UI: autoescaped templates shipped in the package, strict headers.

Every value from a device or a manifest reaches HTML through autoescaping
(``select_autoescape`` covers .html); templates never use ``|safe``. The
Content-Security-Policy allows scripts and styles from this origin only, so
even a missed escape could not run an injected script.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.errors import CsiOtaError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send Origin: null on form posts
    "Cache-Control": "no-store",
}


def _time(value: str | dt.datetime | None) -> str:
    """ISO times as 'YYYY-MM-DD HH:MM:SS' UTC (the page states the zone once)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: dt.datetime | str | None, now: dt.datetime) -> str:
    if value is None:
        return "never"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _percent(part: int | None, whole: int | None) -> float:
    return 0.0 if not whole else round(100.0 * (part or 0) / whole, 1)


def _query(params: dict[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "", False)})


def _bytes(value: int | None) -> str:
    return "—" if value is None else f"{value:,} B"


environment = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(time=_time, percent=_percent, bytes=_bytes)
environment.globals.update(query=_query, ago=_ago)


def page(
    request: Request, template: str, *, user=None, status_code: int = 200, **values: Any
) -> HTMLResponse:
    """Renders ``template`` with the signed-in user, the current path and ``values``."""
    html = environment.get_template(template).render(
        request_path=request.url.path, user=user, now=dt.datetime.now(dt.UTC), **values
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def ui_error(request: Request, status_code: int, message: str) -> HTMLResponse:
    """A refusal as a message fragment (htmx swaps it into the page) or a whole page."""
    template = "_message.html" if is_htmx(request) else "message.html"
    title = {401: "Signed out", 403: "Refused", 404: "Not found", 409: "Conflict"}.get(status_code, "Refused")
    return page(request, template, status_code=status_code, title=title, message=message, ok=False)


def library_error(request: Request, exc: Exception) -> HTMLResponse:
    """NotFound/Conflict/CsiOtaError from the library functions, with the API's status codes."""
    if isinstance(exc, NotFound):
        return ui_error(request, 404, exc.message)
    if isinstance(exc, Conflict):
        return ui_error(request, 409, exc.message)
    assert isinstance(exc, CsiOtaError)
    return ui_error(request, 422, exc.message)
