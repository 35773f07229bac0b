"""Helpers of the controller suite (a uniquely named module: tests/rollout has its own conftest)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csi_ota import imagegen, keys  # noqa: E402
from csi_ota.controller.db import make_engine  # noqa: E402
from csi_ota.controller.models import AuditEntry, Device, Release, StatusReport  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import ControllerServer  # noqa: E402

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_sequence = itertools.count(100)
_version_minor = itertools.count(1)


@dataclass(frozen=True)
class SignedRelease:
    version: str
    image: bytes
    manifest: bytes
    sha256: str


def sign_release(key_path: Path, image: bytes, **manifest_fields) -> bytes:
    """A signed manifest for ``image`` (fresh sequence), with ``manifest_fields`` overridden."""
    private = keys.load_private_key(key_path)
    manifest = manifest_for_image(
        image,
        sequence=manifest_fields.pop("sequence", next(_sequence)),
        key_id=keys.key_id_for(private.public_key()),
    )
    if manifest_fields:
        manifest = replace(manifest, **manifest_fields)
    return sign_manifest(manifest, private)


def build_release(
    key_path: Path, version: str | None = None, *, target_size_bytes: int = 60_000, **spec
) -> SignedRelease:
    version = version or f"2.{next(_version_minor)}.{uuid.uuid4().int % 1000}"
    image = imagegen.build_app_image(
        imagegen.ImageSpec(version=version, target_size_bytes=target_size_bytes, **spec)
    )
    return SignedRelease(version, image, sign_release(key_path, image), hashlib.sha256(image).hexdigest())


def new_device(controller: ControllerServer, *, tags: list[str] = ()) -> tuple[str, str]:
    """Registers a device with a fresh id; returns (device_id, token)."""
    device_id = f"d{uuid.uuid4().hex[:12]}"
    with controller.management_client() as client:
        response = client.post("/api/devices", json={"device_id": device_id, "tags": list(tags)})
    assert response.status_code == 201, response.text
    return device_id, response.json()["token"]


def upload(
    controller: ControllerServer,
    release: SignedRelease,
    *,
    image: bytes | None = None,
    manifest: bytes | None = None,
):
    with controller.management_client() as client:
        return client.post(
            "/api/releases",
            content=release.image if image is None else image,
            headers={
                "X-Release-Manifest": base64.b64encode(
                    release.manifest if manifest is None else manifest
                ).decode()
            },
        )


class Snapshot:
    """Row counts and store files, to prove a refused request stored nothing."""

    def __init__(self, controller: ControllerServer) -> None:
        engine = make_engine(controller.database_url, pool_size=1)
        try:
            with engine.connect() as conn:
                self.counts = {
                    model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar_one()
                    for model in (Device, Release, StatusReport, AuditEntry)
                }
        finally:
            engine.dispose()
        root = controller.firmware_dir
        self.files = (
            sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and (self.counts, self.files) == (other.counts, other.files)

    def __repr__(self) -> str:
        return f"Snapshot({self.counts}, {self.files})"
