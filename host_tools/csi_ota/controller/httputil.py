"""HTTP plumbing shared by the device and management apps: bounded bodies, JSON models, errors.

Errors are ``{"detail": "<reason>"}`` with: 400 malformed JSON or headers,
401 no/unknown token (no detail beyond that), 403 wrong device or role, 404
unknown object, 409 conflict, 413 body too large, 415 wrong content type,
422 well-formed but invalid values (including a release that fails
verification), 429 rate limit.
"""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.errors import CsiOtaError

ModelT = TypeVar("ModelT", bound=BaseModel)


class BodyTooLarge(HTTPException):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"request body larger than {limit_bytes} bytes")


async def read_limited_body(request: Request, limit_bytes: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "Content-Length is not a number")
        if int(declared) > limit_bytes:
            raise BodyTooLarge(limit_bytes)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit_bytes:
                raise BodyTooLarge(limit_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPException(400, "request body ended early") from None
    return b"".join(chunks)


def _short_errors(exc: ValidationError | RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_json_model(body: bytes, model: type[ModelT], request: Request | None = None) -> ModelT:
    """Parses a JSON body into ``model``: 415 for another content type, 400 malformed, 422 invalid."""
    if request is not None:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type not in ("application/json", ""):
            raise HTTPException(415, "send Content-Type: application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, _short_errors(exc)) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        return JSONResponse({"detail": _short_errors(exc)}, status_code=status)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=409)

    @app.exception_handler(CsiOtaError)
    async def _invalid(request: Request, exc: CsiOtaError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=422)
