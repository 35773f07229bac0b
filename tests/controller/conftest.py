"""Fixtures for the controller suite: a real `csi-ota serve` per database backend, signed releases.

One controller process per backend (SQLite in WAL mode, PostgreSQL 15 started
by tests/services.py) is shared by the whole session; tests use fresh device
ids and versions so they do not see each other's rows. Tests that kill or
reconfigure the server start their own. Helpers live in controller_helpers.py.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller_helpers import BACKENDS, Snapshot, build_release  # noqa: E402

from csi_ota import keys  # noqa: E402
from services import ControllerServer, postgres_server, start_controller  # noqa: E402


@pytest.fixture(scope="session")
def release_key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "release.pem"
    keys.generate_key(path)
    return path


@pytest.fixture(scope="session")
def release_public_key(release_key) -> Path:
    return keys.public_key_path_for(release_key)


@pytest.fixture(scope="session")
def make_release(release_key):
    """make_release(version=None, **ImageSpec fields) -> a signed release with a fresh version."""
    return lambda version=None, **spec: build_release(release_key, version, **spec)


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
def backend_url(request):
    """factory(backend) -> a fresh database URL (None = SQLite in the data dir)."""
    return lambda backend: _database_url(backend, request)


@pytest.fixture()
def mgmt(controller) -> httpx.Client:
    with controller.management_client() as client:
        yield client


@pytest.fixture()
def snapshot(controller):
    return lambda: Snapshot(controller)
