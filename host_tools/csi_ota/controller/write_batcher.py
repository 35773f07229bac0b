"""Group commit for what version checks write: one transaction every few milliseconds.

Two kinds of work, both coalesced per device:

* ``touch(device_id, now)`` — only ``last_seen`` moves. Fire and forget: the check is
  answered at once; the row is updated by the next group commit (at most
  TOUCH_GROUP_INTERVAL_S later), never backwards in time. Soft state: a crash loses
  at most the last few tens of milliseconds of it, which the device's next check rewrites.
* ``reconcile(device_id, apply)`` — the check changed what the registry knows (running
  version, slot, otadata state, offer taken...). The caller awaits the returned future:
  the answer leaves only after the change is committed (durable, like before), but one
  commit carries every change of the interval instead of one fsync per check.
  ``apply(device)`` is run inside the batch transaction on the device as the database
  holds it (read with ``SELECT ... FOR UPDATE`` on PostgreSQL, one statement for the whole
  group, into a cache-style device object: the registry's own functions run on it), and
  the columns it changed are written back with one executemany per set of columns.

No ORM session is involved: a group of a few hundred checks is three statements. The
commits do not bump the local change signal (csi_ota.controller.change_feed): what they
write is what the devices themselves report, already in the answering worker's cache;
the other workers learn it from the change table (LISTEN/NOTIFY, poll) within
milliseconds, and a worker that answers before that reconciles against the fresh row.

Status reports do not come here: each keeps its own transaction and is acknowledged only
after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, update

from csi_ota.controller.models import Device

log = logging.getLogger("csi_ota.write_batcher")

GROUP_COMMIT_INTERVAL_S = 0.004  # a check waiting for its commit waits at most this (plus the commit)
TOUCH_GROUP_INTERVAL_S = 0.05  # last_seen alone: bigger groups, fewer transactions (soft state)
MAX_TOUCHES_PER_STATEMENT = 5_000


class WriteBatcher(threading.Thread):
    def __init__(self, engine, cache, transaction_lock: Any = None) -> None:
        """``cache`` (a DeviceCache) reads devices into its device objects; ``transaction_lock`` (SQLite) is
        the controller's one-writer lock."""
        super().__init__(name="group-commit", daemon=True)
        self._engine = engine
        self._cache = cache
        self._transaction_lock = transaction_lock
        self._postgres = engine.dialect.name == "postgresql"
        self._updates: dict[tuple[str, ...], Any] = {}
        self._last_seen_bind: Callable | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._job_waiting = threading.Event()
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
        self._job_waiting.set()
        self._wake.set()
        return future

    # ------------------------------------------------------------------ the committer thread

    def stop(self) -> None:
        self._stopping.set()
        self._job_waiting.set()
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                self.flush()
                return
            if not self._job_waiting.is_set():  # only last_seen so far: gather longer
                self._job_waiting.wait(TOUCH_GROUP_INTERVAL_S)
            self._stopping.wait(GROUP_COMMIT_INTERVAL_S)  # let the group gather
            self._wake.clear()
            self._job_waiting.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            touches, self._touches = self._touches, {}
            jobs, self._jobs = self._jobs, []
        if not touches and not jobs:
            return
        error: BaseException | None = None
        try:
            with self._transaction(), self._engine.begin() as conn:
                if jobs:
                    self._apply_jobs(conn, jobs, touches)
                if touches:
                    self._write_touches(conn, touches)
            self.commits += 1
            self.rows_touched += len(touches) + len(jobs)
        except Exception as exc:  # the registry is unreachable: the checks that wait are told
            log.exception("group commit of %d checks failed", len(touches) + len(jobs))
            error = exc
        for _device_id, _apply, future, loop in jobs:
            loop.call_soon_threadsafe(_resolve, future, error)

    def _transaction(self):
        return self._transaction_lock if self._transaction_lock is not None else contextlib.nullcontext()

    def _apply_jobs(self, conn, jobs, touches: dict[str, dt.datetime]) -> None:
        """Every job's ``apply`` on its device as stored (locked), then the changed columns written back."""
        cache = self._cache
        ids = sorted({device_id for device_id, *_ in jobs})  # one lock order for every process
        statement = cache._device_select(lambda id_column: id_column.in_(ids))
        if self._postgres:
            statement = statement.with_for_update()
        devices = {}
        for row in conn.execute(statement):
            device = cache._make_device(cache._convert(row))
            devices[device.id] = device
        columns = cache.device_columns
        before = {device_id: tuple(getattr(d, c) for c in columns) for device_id, d in devices.items()}
        for device_id, apply, _future, _loop in jobs:
            device = devices.get(device_id)
            if device is not None:
                apply(device)
            touches.pop(device_id, None)  # apply() set last_seen itself
        by_columns: dict[tuple[str, ...], list[dict]] = {}
        for device_id, device in devices.items():
            old = before[device_id]
            changed = tuple(c for i, c in enumerate(columns) if getattr(device, c) != old[i])
            if changed:
                values = {f"v_{c}": getattr(device, c) for c in changed}
                values["b_id"] = device_id
                by_columns.setdefault(changed, []).append(values)
        for changed, rows in by_columns.items():
            conn.execute(self._update_statement(changed), rows)

    def _update_statement(self, changed: tuple[str, ...]):
        statement = self._updates.get(changed)
        if statement is None:
            table = Device.__table__
            statement = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({table.c[c]: bindparam(f"v_{c}") for c in changed})
            )
            self._updates[changed] = statement
        return statement

    def _write_touches(self, connection, touches: dict[str, dt.datetime]) -> None:
        """last_seen of every touched device, never backwards: one executemany on the driver's cursor.

        The values go through the column type's own bind processor (UTCDateTime, then the dialect's
        DATETIME), so the rows hold exactly what the ORM would have written; SQLAlchemy's per-row
        executemany bookkeeping is skipped (it was most of the committer's time at 3,000 checks/s).
        """
        items = sorted(touches.items())  # one lock order for every process: no deadlocks
        bind = self._last_seen_bind
        if bind is None:
            bind = self._last_seen_bind = Device.__table__.c.last_seen.type.bind_processor(
                self._engine.dialect
            ) or (lambda value: value)
        mark = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"UPDATE devices SET last_seen = {mark} "
            f"WHERE id = {mark} AND (last_seen IS NULL OR last_seen < {mark})"
        )
        cursor = connection.connection.cursor()  # the DB-API connection of this transaction
        try:
            for start in range(0, len(items), MAX_TOUCHES_PER_STATEMENT):
                chunk = items[start : start + MAX_TOUCHES_PER_STATEMENT]
                rows = []
                for device_id, seen in chunk:
                    value = bind(seen)
                    rows.append((value, device_id, value))
                cursor.executemany(sql, rows)
        finally:
            cursor.close()


def _resolve(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
