"""The Alembic migrations: they build exactly the schema the models declare, upgrade old data
in place, and a failed upgrade changes nothing — on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from csi_ota.controller.db import alembic_config, make_engine, upgrade_database
from csi_ota.controller.models import Base
from csi_ota.controller.rollout import models as rollout_models  # noqa: F401 - its tables join Base
from csi_ota.errors import CsiOtaError

RELEASE_COLUMNS = (
    "project, version, sequence, sha256, size, chip_id, min_chip_rev_full, max_chip_rev_full, "
    'secure_version, "rollback", key_id, manifest, notes, created, uploaded_by, retired'
)


def _database(backend: str, tmp_path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg").create_database(f"migrations_{tmp_path.name[-20:]}".lower())


def _migrate_to_first_schema(url: str) -> None:
    """The schema before rollback releases kept their version (0001 + the rollout tables)."""
    config = alembic_config(url)
    command.upgrade(config, "0001_initial")
    command.upgrade(config, "rollout@head")


def _insert_release(connection, version: str, sequence: int, rollback: bool) -> int:
    return connection.execute(
        text(
            f"INSERT INTO releases ({RELEASE_COLUMNS}) VALUES ('csi_sensor', :version, :sequence, :sha, 1000, 9, "
            "0, 99, 0, :rollback, 'k', :manifest, '', '2026-11-28 12:00:00', 'test', :retired) RETURNING id"
        ),
        {
            "version": version,
            "sequence": sequence,
            "sha": f"{sequence:064x}",
            "rollback": rollback,
            "manifest": b"m",
            "retired": False,
        },
    ).scalar_one()


def _insert_device(connection, device_id: str, release_id: int) -> None:
    connection.execute(
        text(
            "INSERT INTO devices (id, tags, created, decommissioned, health, csi_messages_received, "
            "csi_bytes_received, config_revision, assigned_release_id) "
            "VALUES (:id, '[]', '2026-11-28 12:00:00', :no, 'unknown', 0, 0, 0, :release)"
        ),
        {"id": device_id, "no": False, "release": release_id},
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_the_schema_the_models_declare(backend, tmp_path, request):
    url = _database(backend, tmp_path, request)
    upgrade_database(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rollback_releases_get_their_version_back_and_assignments_survive(backend, tmp_path, request):
    url = _database(backend, tmp_path, request)
    _migrate_to_first_schema(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            _insert_release(connection, "1.0.0", 1, False)
            _insert_release(connection, "2.0.0", 2, False)
            rollback_id = _insert_release(connection, "1.0.0+rollback.3", 3, True)
            _insert_device(connection, "dev-rolled-back", rollback_id)
        upgrade_database(url)
        with engine.connect() as connection:
            rows = connection.execute(text('SELECT version, sequence, "rollback" FROM releases ORDER BY id'))
            assert [tuple(r) for r in rows] == [("1.0.0", 1, False), ("2.0.0", 2, False), ("1.0.0", 3, True)]
            assigned = connection.execute(text("SELECT assigned_release_id FROM devices")).scalar_one()
            assert assigned == rollback_id  # the table rebuild did not cascade into devices
        with engine.begin() as connection:
            _insert_release(connection, "1.0.0", 4, True)  # another rollback of 1.0.0: allowed
        with pytest.raises(Exception, match="(?i)unique"), engine.begin() as connection:
            _insert_release(connection, "1.0.0", 5, False)  # a second forward 1.0.0: refused
        command.downgrade(alembic_config(url), "0002_rollback_releases-1")  # and back again
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version FROM releases ORDER BY id")).scalars().all()
        assert versions == ["1.0.0", "2.0.0", "1.0.0+rollback.3", "1.0.0+rollback.4"]
    finally:
        engine.dispose()


def test_a_failed_sqlite_upgrade_changes_nothing(tmp_path):
    """A dangling foreign key found after the table rebuild rolls the whole upgrade back."""
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    _migrate_to_first_schema(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            _insert_release(connection, "1.0.0+rollback.3", 3, True)
    finally:
        engine.dispose()
    raw = sqlite3.connect(path)  # foreign keys off: plant a device pointing at no release
    raw.execute(
        "INSERT INTO devices (id, tags, created, decommissioned, health, csi_messages_received, "
        "csi_bytes_received, config_revision, assigned_release_id) "
        "VALUES ('dangling', '[]', '2026-11-28 12:00:00', 0, 'unknown', 0, 0, 0, 999)"
    )
    raw.commit()
    schema_before = raw.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    heads_before = raw.execute("SELECT version_num FROM alembic_version").fetchall()
    raw.close()
    with pytest.raises(CsiOtaError, match="dangling foreign key"):
        upgrade_database(url)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema_before
        assert raw.execute("SELECT version FROM releases").fetchall() == [("1.0.0+rollback.3",)]
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == heads_before
    finally:
        raw.close()
