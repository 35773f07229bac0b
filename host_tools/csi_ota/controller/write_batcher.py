"""Group commit for what version checks write: one transaction every few milliseconds.

Two kinds of work, both coalesced per device:

* ``touch(device_id, now)`` — only ``last_seen`` moves. Fire and forget: the check is
  answered at once; the row is updated by the next group commit (at most
  GROUP_COMMIT_INTERVAL_S later), never backwards in time. Soft state: a crash loses
  at most the last few milliseconds of it, which the device's next check rewrites.
* ``reconcile(device_id, apply)`` — the check changed what the registry knows (running
  version, slot, otadata state, offer taken...). The caller awaits the returned future:
  the answer leaves only after the change is committed (durable, like before), but one
  commit carries every change of the interval instead of one fsync per check.
  ``apply(session, device)`` is run on the locked ORM row inside the batch transaction.

Status reports do not come here: each keeps its own transaction and is acknowledged only
after its commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, select, update

from csi_ota.controller.models import Device

log = logging.getLogger("csi_ota.write_batcher")

GROUP_COMMIT_INTERVAL_S = 0.004
MAX_TOUCHES_PER_STATEMENT = 5_000


class WriteBatcher(threading.Thread):
    def __init__(self, session_scope: Callable[[], Any], dialect: str) -> None:
        """``session_scope()`` is a context manager yielding one transaction's ORM session."""
        super().__init__(name="group-commit", daemon=True)
        self._session_scope = session_scope
        self._postgres = dialect == "postgresql"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._touches: dict[str, dt.datetime] = {}
        self._jobs: list[tuple[str, Callable, asyncio.Future, asyncio.AbstractEventLoop]] = []
        self.commits = 0
        self.rows_touched = 0

    # ------------------------------------------------------------------ producers (event loop)

    def touch(self, device_id: str, now: dt.datetime) -> None:
        with self._lock:
            self._touches[device_id] = now
        self._wake.set()

    def reconcile(self, device_id: str, apply: Callable) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._jobs.append((device_id, apply, future, loop))
        self._wake.set()
        return future

    # ------------------------------------------------------------------ the committer thread

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                self.flush()
                return
            self._stopping.wait(GROUP_COMMIT_INTERVAL_S)  # let the group gather
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            touches, self._touches = self._touches, {}
            jobs, self._jobs = self._jobs, []
        if not touches and not jobs:
            return
        error: BaseException | None = None
        try:
            with self._session_scope() as session:
                for device_id, apply, _future, _loop in jobs:
                    statement = select(Device).where(Device.id == device_id)
                    if self._postgres:
                        statement = statement.with_for_update(of=Device)
                    device = session.scalar(statement)
                    if device is not None:
                        apply(session, device)
                    touches.pop(device_id, None)  # apply() set last_seen itself
                if touches:
                    self._write_touches(session, touches)
            self.commits += 1
            self.rows_touched += len(touches) + len(jobs)
        except Exception as exc:  # the registry is unreachable: the checks that wait are told
            log.exception("group commit of %d checks failed", len(touches) + len(jobs))
            error = exc
        for _device_id, _apply, future, loop in jobs:
            loop.call_soon_threadsafe(_resolve, future, error)

    def _write_touches(self, session, touches: dict[str, dt.datetime]) -> None:
        items = sorted(touches.items())  # one lock order for every process: no deadlocks
        table = Device.__table__
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .where((table.c.last_seen.is_(None)) | (table.c.last_seen < bindparam("b_seen")))
            .values(last_seen=bindparam("b_seen"))
            .execution_options(synchronize_session=False)
        )
        connection = session.connection()
        for start in range(0, len(items), MAX_TOUCHES_PER_STATEMENT):
            chunk = items[start : start + MAX_TOUCHES_PER_STATEMENT]
            connection.execute(statement, [{"b_id": d, "b_seen": seen} for d, seen in chunk])


def _resolve(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
