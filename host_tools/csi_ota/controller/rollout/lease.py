"""A database lease: exactly one controller process runs the rollout engine.

One row (``rollout_engine_lease``) names the holder, its ``generation`` and
when its claim expires. A tick takes or renews the lease with a single
conditional UPDATE (atomic on SQLite and PostgreSQL) at its start, inside the
transaction of the work it guards, and extends it again just before that
transaction commits (:func:`confirm`). So:

* the row stays locked for the whole tick (PostgreSQL's row lock, SQLite's
  write lock): a process that wants the lease waits until the tick committed
  or rolled back — never two deciders at once;
* the claim runs ``ttl_s`` from the tick's *end*, not its start: a tick slower
  than the lease does not hand the lease over (only a holder that stops
  ticking, or stalls between ticks, for ``ttl_s`` loses it);
* :func:`confirm` is the fence: it renews only the holder *and generation*
  the tick started with, and a tick whose fence fails rolls back.

When the holder dies its lease expires after ``ttl_s`` and another process
takes over, bumping ``generation``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csi_ota.controller.rollout.models import EngineLease

LEASE_NAME = "rollout-engine"


class LeaseLost(Exception):
    """The lease changed hands during a tick: the tick's work must not commit."""


@dataclass(frozen=True)
class LeaseView:
    """The lease as committed in the database, seen from one process."""

    holder: str | None
    generation: int
    acquired_real: dt.datetime | None
    expires_real: dt.datetime | None
    this_process: str
    this_process_holds: bool  # the row names this process and its claim has not expired

    def as_dict(self) -> dict:
        return {
            "this_process": self.this_process,
            "this_process_active": self.this_process_holds,
            "holder": self.holder,
            "generation": self.generation,
            "acquired": self.acquired_real.isoformat() if self.acquired_real else None,
            "expires": self.expires_real.isoformat() if self.expires_real else None,
        }


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


def acquire(session: Session, holder: str, ttl_s: float, now_real: dt.datetime) -> int | None:
    """Takes or renews the lease for ``holder`` in the session's transaction; its generation, or None."""
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
    if result.rowcount != 1:
        return None
    return session.execute(select(EngineLease.generation).where(EngineLease.name == LEASE_NAME)).scalar_one()


def confirm(session: Session, holder: str, generation: int, ttl_s: float, now_real: dt.datetime) -> None:
    """The fence before a tick commits: extends the claim from ``now_real`` (the tick's end).

    Raises :class:`LeaseLost` unless the row still names ``holder`` with ``generation``.
    """
    result = session.execute(
        update(EngineLease)
        .where(
            EngineLease.name == LEASE_NAME,
            EngineLease.holder == holder,
            EngineLease.generation == generation,
        )
        .values(expires_real=now_real + dt.timedelta(seconds=ttl_s))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise LeaseLost(f"the engine lease is no longer {holder} generation {generation}")


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


def view(session: Session, this_process: str, now_real: dt.datetime) -> LeaseView:
    """Holder, generation and expiry from one read of the committed row (never from memory)."""
    row = current_lease(session)
    if row is None:
        return LeaseView(None, 0, None, None, this_process, False)
    holds = row.holder == this_process and row.expires_real > now_real
    return LeaseView(
        row.holder or None, row.generation, row.acquired_real, row.expires_real, this_process, holds
    )
