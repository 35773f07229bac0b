"""Fixtures for the controller suite: a real `csi-ota serve` per database backend, signed releases.

One controller process per backend (SQLite in WAL mode, PostgreSQL 15 started
by tests/services.py) is shared by the whole session; tests use fresh device
ids and versions so they do not see each other's rows. Tests that kill or
reconfigure the server start their own.
"""

from __future__ import annotations

import base64
import itertools
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csi_ota import imagegen, keys  # noqa: E402
from csi_ota.controller.db import make_engine  # noqa: E402
from csi_ota.controller.models import AuditEntry, Device, Release, StatusReport  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import ControllerServer, postgres_server, start_controller  # noqa: E402

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_sequence = itertools.count(100)
_version_minor = itertools.count(1)


@dataclass(frozen=True)
class SignedRelease:
    version: str
    image: bytes
    manifest: bytes
    sha256: str


@pytest.fixture(scope="session")
def release_key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "release.pem"
    keys.generate_key(path)
    return path


@pytest.fixture(scope="session")
def release_public_key(release_key) -> Path:
    return keys.public_key_path_for(release_key)


def sign_release(key_path: Path, image: bytes, **manifest_fields) -> bytes:
    private = keys.load_private_key(key_path)
    manifest = manifest_for_image(
        image,
        sequence=manifest_fields.pop("sequence", next(_sequence)),
        key_id=keys.key_id_for(private.public_key()),
    )
    if manifest_fields:
        from dataclasses import replace

        manifest = replace(manifest, **manifest_fields)
    return sign_manifest(manifest, private)


@pytest.fixture(scope="session")
def make_release(release_key):
    """make_release(version=None, **ImageSpec fields) -> a signed release with a fresh version."""

    def factory(version: str | None = None, *, target_size_bytes: int = 60_000, **spec) -> SignedRelease:
        version = version or f"2.{next(_version_minor)}.{uuid.uuid4().int % 1000}"
        image = imagegen.build_app_image(
            imagegen.ImageSpec(version=version, target_size_bytes=target_size_bytes, **spec)
        )
        manifest = sign_release(release_key, image)
        import hashlib

        return SignedRelease(version, image, manifest, hashlib.sha256(image).hexdigest())

    return factory


@pytest.fixture(scope="session")
def pg():
    with postgres_server() as server:
        yield server


def _database_url(backend: str, request) -> str | None:
    if backend == "sqlite":
        return None
    server = request.getfixturevalue("pg")
    return server.create_database(f"csi_ota_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session", params=BACKENDS)
def controller(request, tmp_path_factory, release_public_key) -> ControllerServer:
    """A running controller (device port plain HTTP) on the parametrised backend."""
    database_url = _database_url(request.param, request)
    data_dir = tmp_path_factory.mktemp(f"controller-{request.param}")
    server = start_controller(
        data_dir,
        database_url=database_url,
        trusted_keys=[release_public_key],
        extra_args=["--device-rate", "1000", "--device-burst", "1000"],
    )
    server.backend = request.param
    yield server
    server.stop()


@pytest.fixture()
def backend_url(request, tmp_path):
    """factory(backend) -> a fresh database URL (None = SQLite in the data dir)."""
    return lambda backend: _database_url(backend, request)


@pytest.fixture()
def mgmt(controller) -> httpx.Client:
    with controller.management_client() as client:
        yield client


def new_device(controller: ControllerServer, *, tags: list[str] = ()) -> tuple[str, str]:
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


@pytest.fixture()
def snapshot(controller):
    return lambda: Snapshot(controller)
