"""How every controller process learns that the registry changed: triggers, a change table, a signal.

Database triggers write one ``registry_changes`` row for every inserted, deleted or
meaningfully updated row of ``devices``, ``releases`` and ``tag_configs`` — whoever wrote
it: the management API, the rollout engine, a heartbeat, another controller host, psql.
On PostgreSQL the trigger also sends ``NOTIFY csi_ota_registry``. Updates that only touch
the noisy health columns (``last_seen``, heartbeat figures, last status report) write
nothing, so the version-check hot path's own ``last_seen`` group commits are silent.

A process follows the table three ways, from cheapest to broadest:

* :class:`ChangeSignal` — a counter in shared memory (inherited by ``serve --workers``
  processes) that a session of any local process bumps right after committing a change
  to those tables; the hot path compares it with what it has seen on every request (a
  memory read) and catches up before answering. So a revocation answered by the
  management API is in force on every worker of this host before its response leaves.
* ``LISTEN csi_ota_registry`` (PostgreSQL): other hosts' changes within milliseconds.
* a poll every FOLLOW_POLL_S: the safety net (and SQLite's only cross-host path).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from csi_ota.controller.models import Device, Release, TagConfig

log = logging.getLogger("csi_ota.change_feed")

NOTIFY_CHANNEL = "csi_ota_registry"
FOLLOW_POLL_S = 1.0
CHANGES_KEPT_S = 3600  # rows older than this are pruned (every process catches up within seconds)
# Device columns whose changes do not concern the version check (health figures, last report).
NOISY_DEVICE_COLUMNS = frozenset(
    {
        "last_seen",
        "last_heartbeat",
        "uptime_s",
        "rssi",
        "free_heap",
        "csi_frames",
        "stats",
        "csi_messages_received",
        "csi_bytes_received",
        "health",
        "last_status_seq",
        "last_ota_state",
        "last_ota_reason",
        "last_ota_at",
        "token_created",
        "mqtt_password_hash",
        "created",
        "check_interval_s",
        "heartbeat_interval_s",
    }
)
# table -> its key column
FOLLOWED_TABLES = {"devices": "id", "releases": "id", "tag_configs": "tag"}
_FOLLOWED_CLASSES = (Device, Release, TagConfig)


def followed_device_columns(engine: Engine) -> list[str]:
    """The devices columns whose changes reach the hot path (every column but the noisy ones)."""
    return [
        c["name"] for c in inspect(engine).get_columns("devices") if c["name"] not in NOISY_DEVICE_COLUMNS
    ]


def _sqlite_statements(device_columns: list[str]) -> list[str]:
    statements = []
    for table, key in FOLLOWED_TABLES.items():
        for op, row in (("INSERT", "NEW"), ("DELETE", "OLD"), ("UPDATE", "NEW")):
            name = f"csi_ota_changes_{table}_{op.lower()}"
            statements.append(f"DROP TRIGGER IF EXISTS {name}")
            when = ""
            of = ""
            if op == "UPDATE" and table == "devices":
                of = " OF " + ", ".join(f'"{c}"' for c in device_columns)
                when = " WHEN " + " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in device_columns)
            statements.append(
                f"CREATE TRIGGER {name} AFTER {op}{of} ON {table} FOR EACH ROW{when} BEGIN "
                f"INSERT INTO registry_changes (table_name, row_key) VALUES ('{table}', CAST({row}.\"{key}\" AS TEXT)); END"
            )
    return statements


def _postgres_statements(device_columns: list[str]) -> list[str]:
    statements = [
        """
        CREATE OR REPLACE FUNCTION csi_ota_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            changed_row jsonb;
        BEGIN
            IF TG_OP = 'DELETE' THEN changed_row := to_jsonb(OLD); ELSE changed_row := to_jsonb(NEW); END IF;
            INSERT INTO registry_changes (table_name, row_key) VALUES (TG_TABLE_NAME, changed_row ->> TG_ARGV[0]);
            PERFORM pg_notify('"""
        + NOTIFY_CHANNEL
        + """', '');
            RETURN NULL;
        END $$
        """
    ]
    for table, key in FOLLOWED_TABLES.items():
        for op in ("INSERT", "DELETE", "UPDATE"):
            name = f"csi_ota_changes_{table}_{op.lower()}"
            statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            of, when = "", ""
            if op == "UPDATE" and table == "devices":
                of = " OF " + ", ".join(f'"{c}"' for c in device_columns)
                when = (
                    " WHEN ("
                    + " OR ".join(f'OLD."{c}"::text IS DISTINCT FROM NEW."{c}"::text' for c in device_columns)
                    + ")"
                )
            statements.append(
                f"CREATE TRIGGER {name} AFTER {op}{of} ON {table} FOR EACH ROW{when} "
                f"EXECUTE FUNCTION csi_ota_note_change('{key}')"
            )
    return statements


def install_triggers(engine: Engine) -> None:
    """(Re)creates the change triggers over the tables' current columns (idempotent, one transaction)."""
    columns = followed_device_columns(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('csi_ota_change_triggers'))"))
            statements = _postgres_statements(columns)
        else:
            statements = _sqlite_statements(columns)
        for statement in statements:
            conn.exec_driver_sql(statement)


def prune_changes(engine: Engine) -> int:
    """Deletes change rows older than CHANGES_KEPT_S; returns how many."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            sql = f"DELETE FROM registry_changes WHERE changed_at < now() AT TIME ZONE 'UTC' - interval '{CHANGES_KEPT_S} seconds'"
        else:
            sql = f"DELETE FROM registry_changes WHERE changed_at < datetime('now', '-{CHANGES_KEPT_S} seconds')"
        return conn.exec_driver_sql(sql).rowcount or 0


class ChangeSignal:
    """A counter bumped after a local commit changed a followed table (shared memory across workers)."""

    def __init__(self, shared: bool = True) -> None:
        self._value = multiprocessing.RawValue("Q", 0) if shared else _Plain()

    @property
    def value(self) -> int:
        return self._value.value

    def bump(self) -> None:
        self._value.value = (self._value.value + 1) & 0xFFFFFFFFFFFFFFFF


class _Plain:
    value = 0


def watch_sessions(
    factory: sessionmaker[Session], signal: ChangeSignal, on_commit: Callable[[], None]
) -> None:
    """Bumps ``signal`` (and calls ``on_commit``) after each commit that changed a followed row."""

    def after_flush(session: Session, _context) -> None:
        if session.info.get("csi_ota_changed"):
            return
        for obj in (*session.new, *session.deleted):
            if isinstance(obj, _FOLLOWED_CLASSES):
                session.info["csi_ota_changed"] = True
                return
        for obj in session.dirty:
            if not isinstance(obj, _FOLLOWED_CLASSES):
                continue
            state = inspect(obj)
            for attr in state.mapper.column_attrs:
                if attr.key in NOISY_DEVICE_COLUMNS and isinstance(obj, Device):
                    continue
                if state.attrs[attr.key].history.has_changes():
                    session.info["csi_ota_changed"] = True
                    return

    def after_commit(session: Session) -> None:
        if session.info.pop("csi_ota_changed", False):
            signal.bump()
            on_commit()

    def after_rollback(session: Session) -> None:
        session.info.pop("csi_ota_changed", None)

    event.listen(factory, "after_flush", after_flush)
    event.listen(factory, "after_commit", after_commit)
    event.listen(factory, "after_soft_rollback", lambda session, _tx: after_rollback(session))


class ChangeFollower(threading.Thread):
    """Calls ``catch_up`` on every NOTIFY (PostgreSQL) and at least every FOLLOW_POLL_S."""

    def __init__(self, engine: Engine, catch_up: Callable[[], None]) -> None:
        super().__init__(name="registry-changes", daemon=True)
        self._engine = engine
        self._catch_up = catch_up
        self._stopping = threading.Event()
        self._polls = 0

    def stop(self) -> None:
        self._stopping.set()

    def _step(self) -> None:
        try:
            self._catch_up()
        except Exception:
            log.exception("catching up with registry changes failed")
        self._polls += 1
        if self._polls % 600 == 0:
            try:
                prune_changes(self._engine)
            except Exception:
                log.exception("pruning registry_changes failed")

    def run(self) -> None:
        if self._engine.dialect.name == "postgresql":
            while not self._stopping.is_set():
                try:
                    self._listen()
                except Exception:
                    log.exception("LISTEN %s failed; polling", NOTIFY_CHANNEL)
                    self._stopping.wait(FOLLOW_POLL_S)
        else:
            while not self._stopping.wait(FOLLOW_POLL_S / 5):
                self._step()

    def _listen(self) -> None:
        import psycopg

        url = self._engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._step()  # changes made before LISTEN
            while not self._stopping.is_set():
                got = False
                for _ in conn.notifies(timeout=FOLLOW_POLL_S, stop_after=1):
                    got = True
                if got:
                    # Drain the burst: further notifications of the same commit(s) are covered by one catch-up.
                    for _ in conn.notifies(timeout=0.0005):
                        pass
                self._step()
