"""Release upload intake shared by the management API and the web UI.

The request body is the image (streamed into the store's ``.incoming`` while
hashed, never more than FIRMWARE_MAX_SIZE bytes), the ``X-Release-Manifest``
header the base64 signed manifest. Nothing is stored unless every check of
:func:`csi_ota.controller.releases.check_upload` passes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from starlette.requests import ClientDisconnect

from csi_ota.controller import releases
from csi_ota.controller.context import ControllerContext
from csi_ota.controller.problems import Conflict

MANIFEST_HEADER = "X-Release-Manifest"
UPLOAD_HEAD_BYTES = releases.IMAGE_HEAD_BYTES


async def receive_release(ctx: ControllerContext, request: Request, actor: str) -> dict[str, Any]:
    """Streams, verifies and stores the uploaded release; returns its row as a dict (4xx when refused)."""
    limit = ctx.settings.firmware_max_size_bytes
    try:
        manifest_bytes = base64.b64decode(request.headers.get(MANIFEST_HEADER, ""), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{MANIFEST_HEADER} is not base64") from None
    if not manifest_bytes:
        raise HTTPException(400, f"send the signed manifest in {MANIFEST_HEADER} (base64)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        ctx.metrics.releases_rejected.inc()
        if not declared.isdigit():
            raise HTTPException(400, "Content-Length is not a number")
        raise HTTPException(413, f"image larger than FIRMWARE_MAX_SIZE ({limit} bytes)")
    incoming = ctx.store.new_incoming()
    head = bytearray()
    try:
        try:
            async for chunk in request.stream():
                if incoming.size_bytes + len(chunk) > limit:
                    raise HTTPException(413, f"image larger than FIRMWARE_MAX_SIZE ({limit} bytes)")
                if len(head) < UPLOAD_HEAD_BYTES:
                    head += chunk[: UPLOAD_HEAD_BYTES - len(head)]
                incoming.write(chunk)
        except ClientDisconnect:
            raise HTTPException(400, "upload ended early") from None
        if declared is not None and incoming.size_bytes != int(declared):
            raise HTTPException(400, "upload ended early")
        sha256 = await run_in_threadpool(incoming.finish)
        image = releases.UploadedImage(sha256=sha256, size_bytes=incoming.size_bytes, head=bytes(head))

        def verify_and_store() -> dict[str, Any]:
            manifest = releases.check_upload(manifest_bytes, image, ctx.trusted_keys)
            with ctx.session() as session:
                if releases.find_existing_release(session, manifest) is not None:
                    raise Conflict(releases.describe_duplicate(manifest))
                ctx.store.commit(incoming, sha256)
                release = releases.insert_release(session, manifest, manifest_bytes, actor=actor)
                return releases.release_to_dict(release)

        try:
            result = await run_in_threadpool(verify_and_store)
        except IntegrityError:
            raise Conflict("that release version was stored concurrently") from None
        return result
    except BaseException:
        ctx.metrics.releases_rejected.inc()
        raise
    finally:
        incoming.discard()  # no-op once committed (the .part file was moved)
