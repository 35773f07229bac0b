"""A database lease: exactly one controller process runs the rollout engine.

One row (``rollout_engine_lease``) names the holder and when its claim
expires. A process takes or renews the lease with a single conditional UPDATE
(atomic on SQLite and PostgreSQL), inside the same transaction as the engine
tick it guards — on PostgreSQL the row lock fences a late writer, on SQLite
the database write lock does. When the holder dies its lease expires after
``ttl_s`` and another process takes over, bumping ``generation``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csi_ota.controller.rollout.models import EngineLease

LEASE_NAME = "rollout-engine"


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ensure_row(session: Session, now_real: dt.datetime) -> None:
    if session.get(EngineLease, LEASE_NAME) is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                EngineLease(
                    name=LEASE_NAME,
                    holder="",
                    expires_real=now_real - dt.timedelta(seconds=1),
                    acquired_real=now_real,
                    generation=0,
                )
            )
    except IntegrityError:  # another process inserted it first
        pass


def try_acquire(session: Session, holder: str, ttl_s: float, now_real: dt.datetime) -> bool:
    """Takes or renews the lease for ``holder`` in the session's transaction; True when held."""
    _ensure_row(session, now_real)
    current = session.execute(
        select(EngineLease.holder).where(EngineLease.name == LEASE_NAME)
    ).scalar_one_or_none()
    taking_over = current != holder
    values = {"holder": holder, "expires_real": now_real + dt.timedelta(seconds=ttl_s)}
    if taking_over:
        values["acquired_real"] = now_real
        values["generation"] = EngineLease.generation + 1
    condition = (EngineLease.holder == holder) if not taking_over else (EngineLease.expires_real <= now_real)
    result = session.execute(
        update(EngineLease)
        .where(EngineLease.name == LEASE_NAME, EngineLease.holder == current, condition)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def release(session: Session, holder: str, now_real: dt.datetime) -> None:
    """Gives the lease up (clean shutdown) so another process need not wait for expiry."""
    session.execute(
        update(EngineLease)
        .where(EngineLease.name == LEASE_NAME, EngineLease.holder == holder)
        .values(expires_real=now_real - dt.timedelta(seconds=1))
        .execution_options(synchronize_session=False)
    )


def current_lease(session: Session) -> EngineLease | None:
    return session.get(EngineLease, LEASE_NAME)
