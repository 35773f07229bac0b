"""The rollout engine's tables, declared on the controller's :data:`Base`.

Every decision the engine makes is derived from these rows plus the
controller's own tables (devices, releases, status_reports), so a killed and
restarted controller — or the other controller process that takes over the
lease — reaches the same decisions.

Two kinds of time are stored: ``*_real`` columns are wall-clock UTC (compared
with the controller's own timestamps such as ``devices.last_heartbeat``) and
``*_vt`` columns are the engine's virtual clock (soak, update window, health
timeout), which equals wall-clock time unless a time scale is configured.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from csi_ota.controller.models import DEVICE_ID_MAX_CHARS, Base, UTCDateTime, utcnow

# Rollout states. "Open" rollouts hold their devices (one open rollout per device).
ROLLOUT_STATES = ("active", "paused", "halted", "rolling_back", "completed", "aborted", "rolled_back")
# A rollout the engine paused by itself because devices outside the update went silent too
# (controller or network trouble, not the release) carries this prefix in ``hold_reason`` and
# resumes by itself when they are heard again.
OPEN_ROLLOUT_STATES = ("active", "paused", "halted", "rolling_back")
TERMINAL_ROLLOUT_STATES = ("completed", "aborted", "rolled_back")

# Per-device states inside a rollout.
DEVICE_STATES = (
    "pending",  # waiting for its stage, a batch slot or the update window
    "offered",  # assigned the release; judged from reports, heartbeats and the version check
    "succeeded",  # runs the release, marked it valid, healthy heartbeat after the update
    "failed",  # failure reports / old version / silence, after UPDATE_RETRY_COUNT retries
    "excluded",  # removed by an operator
    "not_reached",  # never took the offer within its own check interval, but alive: neither success nor failure
    "rolling_back",  # offered the signed rollback release
    "rolled_back",  # back on the previous release, healthy
    "rollback_failed",  # did not come back within the health timeout
)
IN_FLIGHT_DEVICE_STATES = ("offered", "rolling_back")
STAGE_STATES = ("waiting", "open", "soaking", "passed", "halted")


class Rollout(Base):
    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    release_id: Mapped[int] = mapped_column(Integer, ForeignKey("releases.id"), nullable=False)
    # The release devices roll back to (its image is re-signed as a rollback release).
    previous_release_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("releases.id"), nullable=True)
    rollback_release_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("releases.id"), nullable=True)
    selection: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="active", index=True)
    current_stage: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    halt_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # Why the engine itself paused the rollout (silence outside the update); "" when it did not.
    hold_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str] = mapped_column(String(80), nullable=False, default="")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RolloutStage(Base):
    __tablename__ = "rollout_stages"

    rollout_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    percent: Mapped[int] = mapped_column(Integer, nullable=False)
    soak_s: Mapped[int] = mapped_column(BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="waiting")
    member_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    opened_vt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    soak_started_vt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    passed_vt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RolloutDevice(Base):
    __tablename__ = "rollout_devices"
    __table_args__ = (Index("ix_rollout_devices_rollout_state", "rollout_id", "state"),)

    rollout_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        String(DEVICE_ID_MAX_CHARS), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[int] = mapped_column(Integer, nullable=False)
    bucket: Mapped[int] = mapped_column(BigInteger, nullable=False)  # hash order inside the stage
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # failed attempts so far
    reason: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    from_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    prior_assigned_release_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offered_vt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    offered_real: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_offered_vt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the device was first seen running the target (success report or version check).
    installed_real: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    downloaded_real: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the device took the current offer (its health clock starts here, not at the offer).
    taken_real: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_vt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_real: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RolloutMembership(Base):
    """Device → its one open rollout. The primary key makes "at most one" a database rule."""

    __tablename__ = "rollout_memberships"

    device_id: Mapped[str] = mapped_column(
        String(DEVICE_ID_MAX_CHARS), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    rollout_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False, index=True
    )


class RolloutEvent(Base):
    """Gate decisions, halts, operator actions: the rollout's story, in order."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at_real: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    at_vt: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class RolloutAlert(Base):
    """A webhook alert, stored before it is sent so a restart delivers it anyway."""

    __tablename__ = "rollout_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    url: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    sent: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EngineLease(Base):
    """The one row that says which controller process runs the engine, until when."""

    __tablename__ = "rollout_engine_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    expires_real: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    acquired_real: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class IntakeStall(Base):
    """A wall-clock span in which a controller process could not take in device traffic on time.

    Recorded by every controller process (intake.py: event-loop lag plus database latency);
    the engine never counts such a span as a device's silence.
    """

    __tablename__ = "rollout_intake_stalls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    process: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    start_real: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    end_real: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    lag_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
