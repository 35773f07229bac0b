"""Fixtures for tests/security: each test re-runs one finding of issue 12 against real processes.

The controller suite's helpers (tests/controller/controller_helpers.py) and the
services (tests/services.py: PostgreSQL, Mosquitto, `csi-ota serve`) are reused.
Controller-side findings (H2-H4, M1-M4, L1-L3, L5-L7) live in test_h*/test_m*/test_l*
files written by one helper, device-side ones in their own files.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from csi_ota import keys  # noqa: E402
from services import postgres_server, start_controller  # noqa: E402


@pytest.fixture(scope="session")
def release_key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("security-keys") / "release.pem"
    keys.generate_key(path)
    return path


@pytest.fixture(scope="session")
def release_public_key(release_key) -> Path:
    return keys.public_key_path_for(release_key)


@pytest.fixture(scope="session")
def pg():
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_controller(pg, tmp_path_factory, release_public_key):
    """A controller on PostgreSQL (plain HTTP, generous rate limit), shared by the session."""
    database_url = pg.create_database(f"csi_ota_sec_{uuid.uuid4().hex[:12]}")
    server = start_controller(
        tmp_path_factory.mktemp("security-pg"),
        database_url=database_url,
        trusted_keys=[release_public_key],
        extra_args=["--device-rate", "1000", "--device-burst", "1000"],
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_controller(tmp_path_factory, release_public_key):
    """A controller on SQLite (plain HTTP, generous rate limit), shared by the session."""
    server = start_controller(
        tmp_path_factory.mktemp("security-sqlite"),
        trusted_keys=[release_public_key],
        extra_args=["--device-rate", "1000", "--device-burst", "1000"],
    )
    yield server
    server.stop()
