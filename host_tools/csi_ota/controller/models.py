"""The controller's tables (SQLAlchemy 2 declarative).

The schema is created and upgraded by the Alembic migrations shipped in
``csi_ota/controller/migrations``; these classes are what the code reads and
writes. The rollout engine (``csi_ota.controller.rollout``) declares its own
tables on the same :data:`Base` and ships its own migrations
(``rollout/migrations``, picked up as a second version location).

Conventions: times are UTC (stored naive, returned aware), device ids are the
firmware's ``device_id`` strings, sequence numbers are u32 (stored as
BIGINT so PostgreSQL's signed INTEGER never overflows), tokens are stored
only as SHA-256 hex digests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DEVICE_ID_MAX_CHARS = 31  # ota_deployment_config_t.device_id is char[32]
VERSION_MAX_CHARS = 32  # esp_app_desc_t.version is char[32]
SHA256_HEX_CHARS = 64

# Health values a device can have; "unknown" until the first heartbeat.
DEVICE_HEALTH_VALUES = ("unknown", "healthy", "degraded", "offline")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


class Release(Base):
    """A verified release: the manifest exactly as signed, the image in the store by sha256.

    One release per (project, version); signed rollback releases (``rollback``
    true: an earlier image under a newer-sequence manifest) carry the version
    they roll back to, any number of them, one per sequence.
    """

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("project", "version", "sequence", name="uq_releases_project_version_sequence"),
        Index(
            "uq_releases_project_version_forward",
            "project",
            "version",
            unique=True,
            sqlite_where=text('NOT "rollback"'),
            postgresql_where=text('NOT "rollback"'),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(32), nullable=False)
    version: Mapped[str] = mapped_column(String(VERSION_MAX_CHARS), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_CHARS), nullable=False, index=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    chip_id: Mapped[int] = mapped_column(Integer, nullable=False)
    min_chip_rev_full: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_chip_rev_full: Mapped[int] = mapped_column(Integer, nullable=False, default=99)
    secure_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rollback: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    key_id: Mapped[str] = mapped_column(String(16), nullable=False)
    manifest: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    uploaded_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    retired: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Device(Base):
    """One sensor: identity, token hash, what it runs, its health, what it is offered."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(DEVICE_ID_MAX_CHARS), primary_key=True)
    # SHA-256 hex of the bearer token; NULL once revoked.
    token_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX_CHARS), nullable=True, unique=True)
    token_created: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Mosquitto password-file hash ($7$ PBKDF2-SHA512) of the device's MQTT password (tokens.mqtt_password_for).
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    decommissioned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    # Reconciled from the version check and heartbeats.
    version: Mapped[str | None] = mapped_column(String(VERSION_MAX_CHARS), nullable=True)
    secure_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ota_state: Mapped[str | None] = mapped_column(String(32), nullable=True)  # otadata state name
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # Health (heartbeats over HTTP or MQTT, stats).
    health: Mapped[str] = mapped_column(String(16), nullable=False, default="unknown")
    last_heartbeat: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    uptime_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rssi: Mapped[int | None] = mapped_column(Integer, nullable=True)
    free_heap: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    csi_frames: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    csi_messages_received: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    csi_bytes_received: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    # Last OTA status report.
    last_status_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_ota_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_ota_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_ota_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # The release the version check offers (set by `devices assign` and the rollout engine).
    assigned_release_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="SET NULL"), nullable=True, index=True
    )
    assigned_release: Mapped[Release | None] = relationship(lazy="joined")

    # Intervals the device says it runs with (heartbeat fields check_interval_sec /
    # heartbeat_interval_sec): the rollout engine judges reach and silence against them.
    check_interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heartbeat_interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When the device took its current offer: the first version check that received the
    # manifest of ``offer_release_id`` (or its first download of it) since the offer was made.
    offer_release_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offer_taken_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # Per-device configuration (merged over per-tag configuration), pushed with the version check.
    config: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    config_revision: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class TagConfig(Base):
    """Configuration for every device carrying ``tag`` (device config wins on conflicts)."""

    __tablename__ = "tag_configs"

    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class StatusReport(Base):
    """A device's OTA state report, stored once per (device_id, seq)."""

    __tablename__ = "status_reports"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_status_reports_device_seq"),
        Index("ix_status_reports_device_received", "device_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(
        String(DEVICE_ID_MAX_CHARS), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(String(32), nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False, default="ok")
    version: Mapped[str | None] = mapped_column(String(VERSION_MAX_CHARS), nullable=True)
    target_version: Mapped[str | None] = mapped_column(String(VERSION_MAX_CHARS), nullable=True)
    target_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX_CHARS), nullable=True)
    manifest_sequence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_written: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class AuditEntry(Base):
    """Who did what, when: every management action and every device OTA state change."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80), nullable=False)  # "admin:alice", "device:x", "system"
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class AdminUser(Base):
    """A person or system using the management API, with one role."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)  # one of csi_ota.controller.ADMIN_ROLES
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class AdminToken(Base):
    """A bearer token of an admin user (SHA-256 hex only)."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_CHARS), nullable=False, unique=True)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    user: Mapped[AdminUser] = relationship(lazy="joined")


class RegistryChange(Base):
    """A row of the devices/releases/tag_configs tables changed (written by database triggers).

    The controller's in-memory device cache (csi_ota.controller.device_cache) follows this
    table: every process reloads the rows named here, so a revocation, an assignment or a
    config push made by any process, the rollout engine or a direct SQL update reaches the
    version-check hot path of every process. The triggers are (re)created at each start by
    csi_ota.controller.change_feed.install_triggers, over the columns the table has then.
    """

    __tablename__ = "registry_changes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    table_name: Mapped[str] = mapped_column(String(32), nullable=False)
    row_key: Mapped[str] = mapped_column(String(64), nullable=False)
    changed_at: Mapped[dt.datetime] = mapped_column(
        DateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP"), index=True
    )
