"""The registry as the version-check hot path sees it: every device and release in memory.

Loaded whole at start (one streamed SELECT per table), then kept current from the
``registry_changes`` table (csi_ota.controller.change_feed): each change row names a
device, release or tag whose row is read again. Lookups are dict reads: token hash →
device, device id → device, release id / sha256 → release.

A cached device has an attribute for every ``devices`` column but the noisy health
ones, under the column's name, so the registry's own functions (reconcile_version_check,
offered_release, ...) run on it unchanged — the hot path and the ORM path share one
implementation of what a version check means. ``assigned_release`` reads the cached
release. Memory: ~0.5 KB per device (~500 MB for a million, per process).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy import inspect as _inspect
from sqlalchemy.engine import Engine

from csi_ota.controller import registry
from csi_ota.controller.change_feed import NOISY_DEVICE_COLUMNS, ChangeSignal
from csi_ota.controller.models import Device, RegistryChange, Release, TagConfig

log = logging.getLogger("csi_ota.device_cache")

LOAD_BATCH_ROWS = 10_000
CHANGES_PER_QUERY = 5_000
# Change ids are taken at INSERT but become visible at COMMIT: on PostgreSQL a long transaction
# (a rollout engine tick that assigns devices and signs a rollback release) commits ids lower than
# ones already read. Skipped ids are looked for again for this long (then they were a rollback).
CHANGE_HOLE_GRACE_S = 120.0
MAX_CHANGE_HOLES = 10_000
RELEASE_COLUMNS = ("id", "version", "sha256", "size", "retired", "rollback", "manifest")


@dataclass
class CachedRelease:
    id: int
    version: str
    sha256: str
    size: int
    retired: bool
    rollback: bool
    manifest: bytes
    path: Path


def _utc(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


_JSON_MEMO_MAX = 100_000


class _JsonTexts:
    """Parses JSON column texts once per distinct text (a fleet shares a few tag lists; the cache never mutates them)."""

    def __init__(self) -> None:
        self.memo: dict = {}

    def __call__(self, value):
        if not isinstance(value, str | bytes):
            return value
        parsed = self.memo.get(value)
        if parsed is None:
            parsed = json.loads(value)
            if len(self.memo) < _JSON_MEMO_MAX:
                self.memo[value] = parsed
        return parsed


def _device_class(columns: list[str], releases: dict[int, CachedRelease]) -> type:
    """A __slots__ class with one attribute per followed devices column (+ last_seen)."""

    def assigned_release(self) -> CachedRelease | None:
        release_id = self.assigned_release_id
        return None if release_id is None else releases.get(release_id)

    arguments = ", ".join(f"c{i}" for i in range(len(columns)))
    body = "".join(f"    self.{name} = c{i}\n" for i, name in enumerate(columns))
    code = f"def __init__(self, {arguments}):\n{body}    self.config_header = None\n    self.config_generation = -1\n"
    scope: dict[str, Any] = {}
    exec(code, scope)  # a positional __init__: building a million devices at start is ~1 µs each
    namespace: dict[str, Any] = {
        "__init__": scope["__init__"],
        "__slots__": (*columns, "config_header", "config_generation"),
        "assigned_release": property(assigned_release),
        "columns": tuple(columns),
    }
    return type("CachedDevice", (), namespace)


class DeviceCache:
    """All devices, releases and tag configs of the registry, in this process's memory."""

    def __init__(self, engine: Engine, firmware_dir: Path, signal: ChangeSignal | None = None) -> None:
        self.engine = engine
        self.firmware_dir = Path(firmware_dir)
        self.signal = signal or ChangeSignal(shared=False)
        # Columns added by other migrations (rollout) are read from the live table.
        live = [c["name"] for c in _inspect(engine).get_columns("devices")]
        self.device_columns = [c for c in live if c not in NOISY_DEVICE_COLUMNS or c == "last_seen"]
        self.releases: dict[int, CachedRelease] = {}
        self.releases_by_sha: dict[str, list[CachedRelease]] = {}
        self.device_class = _device_class(self.device_columns, self.releases)
        self.by_token: dict[str, Any] = {}
        self.by_id: dict[str, Any] = {}
        self.tag_configs: dict[str, dict[str, str]] = {}
        self.tag_generation = 0
        self.last_change_id = 0
        self.change_holes: dict[int, float] = {}  # skipped change id -> monotonic time first missed
        self.seen_signal = -1
        self.lock = threading.RLock()
        self._device_table_columns = None

    # ------------------------------------------------------------------ loading

    def _device_select(self, where=None):
        """SELECT of the followed columns, typed (the model's types; reflected ones for other columns)."""
        if self._device_table_columns is None:
            from sqlalchemy import MetaData, Table

            model = Device.__table__.c
            reflected = Table("devices", MetaData(), autoload_with=self.engine).c
            self._device_table_columns = [
                model[c] if c in model else reflected[c] for c in self.device_columns
            ]
        columns = self._device_table_columns
        statement = select(*columns)
        if where is not None:
            statement = statement.where(where(columns[self.device_columns.index("id")]))
        return statement

    def _make_device(self, row) -> Any:
        return self.device_class(*row)

    def _put_device(self, device) -> None:
        old = self.by_id.get(device.id)
        if old is not None and old.token_hash and self.by_token.get(old.token_hash) is old:
            del self.by_token[old.token_hash]
        self.by_id[device.id] = device
        if device.token_hash and not device.decommissioned:
            self.by_token[device.token_hash] = device

    def _drop_device(self, device_id: str) -> None:
        old = self.by_id.pop(device_id, None)
        if old is not None and old.token_hash and self.by_token.get(old.token_hash) is old:
            del self.by_token[old.token_hash]

    def _release_from_row(self, row) -> CachedRelease:
        return CachedRelease(
            id=row.id,
            version=row.version,
            sha256=row.sha256,
            size=row.size,
            retired=bool(row.retired),
            rollback=bool(row.rollback),
            manifest=bytes(row.manifest),
            path=self.firmware_dir / f"{row.sha256}.bin",
        )

    def _index_releases(self) -> None:
        self.releases_by_sha.clear()
        for release in sorted(self.releases.values(), key=lambda r: r.id):
            self.releases_by_sha.setdefault(release.sha256, []).append(release)

    def load(self) -> None:
        """Reads the whole registry (changes committed meanwhile are applied by the next catch-up)."""
        with self.lock, self.engine.connect() as conn:
            self.last_change_id = conn.scalar(select(func.coalesce(func.max(RegistryChange.id), 0)))
            self._note_holes_below(conn, self.last_change_id)
            columns = [Release.__table__.c[c] for c in RELEASE_COLUMNS]
            self.releases.clear()
            for row in conn.execute(select(*columns)):
                self.releases[row.id] = self._release_from_row(row)
            self._index_releases()
            self.tag_configs = {row.tag: dict(row.config or {}) for row in conn.execute(select(TagConfig))}
            self.tag_generation += 1
            self.by_id.clear()
            self.by_token.clear()
        self._load_devices_raw()
        log.info("device cache: %d devices, %d releases", len(self.by_id), len(self.releases))

    def _note_holes_below(self, conn, newest_id: int) -> None:
        """Ids below the newest committed change that are not visible yet are looked for again.

        A transaction in flight at start-up (an engine tick) holds change ids below ones already
        committed; its rows are not in the load, and a catch-up from ``newest_id`` alone would
        skip them for good — the same out-of-order commit catch_up handles at run time.
        """
        first = max(1, newest_id - MAX_CHANGE_HOLES + 1)
        present = set(conn.scalars(select(RegistryChange.id).where(RegistryChange.id >= first)))
        now = time.monotonic()
        self.change_holes = dict.fromkeys((i for i in range(first, newest_id) if i not in present), now)

    def _load_devices_raw(self) -> None:
        """Every device through the DB-API cursor (server-side on PostgreSQL): ~2 µs a row, not ~100."""
        types = {c["name"]: c["type"] for c in _inspect(self.engine).get_columns("devices")}
        converters = []
        json_texts = _JsonTexts()
        postgres = self.engine.dialect.name == "postgresql"
        selected = []
        for index, name in enumerate(self.device_columns):
            kind = type(types[name]).__name__.upper()
            if "DATE" in kind or "TIME" in kind:
                converters.append((index, _utc))
            elif "JSON" in kind:
                converters.append((index, json_texts))
            elif "BOOL" in kind:
                converters.append((index, bool))
            is_json = "JSON" in kind and postgres
            selected.append(f'"{name}"::text' if is_json else f'"{name}"')
        make = self._make_device
        put = self._put_device
        column_list = ", ".join(selected)
        raw = self.engine.raw_connection()
        try:
            if self.engine.dialect.name == "postgresql":
                cursor = raw.driver_connection.cursor(name="csi_ota_device_cache")
                cursor.itersize = LOAD_BATCH_ROWS
            else:
                cursor = raw.cursor()
            cursor.execute(f"SELECT {column_list} FROM devices")
            with self.lock:
                while True:
                    rows = cursor.fetchmany(LOAD_BATCH_ROWS)
                    if not rows:
                        break
                    for row in rows:
                        if converters:
                            row = list(row)
                            for index, convert in converters:
                                if row[index] is not None:
                                    row[index] = convert(row[index])
                        put(make(row))
            cursor.close()
            raw.commit()
        finally:
            raw.close()

    def _convert(self, row) -> tuple:
        """Typed column values → what the ORM would give (aware UTC datetimes, JSON lists/dicts, bools)."""
        values = list(row)
        for index, value in enumerate(values):
            if isinstance(value, dt.datetime):
                values[index] = _utc(value)
        return tuple(values)

    # ------------------------------------------------------------------ following changes

    def maybe_catch_up(self) -> None:
        """Catches up if a local process signalled a committed change since the last time (cheap)."""
        value = self.signal.value
        if value != self.seen_signal:
            self.seen_signal = value
            self.catch_up()

    def catch_up(self) -> int:
        """Applies every registry change committed since the last catch-up; returns rows applied."""
        applied = 0
        with self.lock, self.engine.connect() as conn:
            while True:
                now = time.monotonic()
                self.change_holes = {
                    i: t for i, t in self.change_holes.items() if now - t < CHANGE_HOLE_GRACE_S
                }
                condition = RegistryChange.id > self.last_change_id
                if self.change_holes:
                    condition = or_(condition, RegistryChange.id.in_(list(self.change_holes)))
                rows = conn.execute(
                    select(RegistryChange.id, RegistryChange.table_name, RegistryChange.row_key)
                    .where(condition)
                    .order_by(RegistryChange.id)
                    .limit(CHANGES_PER_QUERY)
                ).all()
                if not rows:
                    return applied
                expected = self.last_change_id + 1
                for row in rows:
                    self.change_holes.pop(row.id, None)
                    if row.id >= expected:
                        if row.id - expected <= MAX_CHANGE_HOLES - len(self.change_holes):
                            self.change_holes.update(dict.fromkeys(range(expected, row.id), now))
                        expected = row.id + 1
                keys: dict[str, set[str]] = defaultdict(set)
                for row in rows:
                    keys[row.table_name].add(row.row_key)
                if "releases" in keys:
                    ids = [int(k) for k in keys["releases"]]
                    columns = [Release.__table__.c[c] for c in RELEASE_COLUMNS]
                    found = {r.id: r for r in conn.execute(select(*columns).where(Release.id.in_(ids)))}
                    for release_id in ids:
                        if release_id in found:
                            self.releases[release_id] = self._release_from_row(found[release_id])
                        else:
                            self.releases.pop(release_id, None)
                    self._index_releases()
                if "tag_configs" in keys:
                    self.tag_configs = {r.tag: dict(r.config or {}) for r in conn.execute(select(TagConfig))}
                    self.tag_generation += 1
                if "devices" in keys:
                    self._reload_devices(conn, sorted(keys["devices"]))
                self.last_change_id = max(self.last_change_id, rows[-1].id)
                applied += len(rows)
                if len(rows) < CHANGES_PER_QUERY:
                    return applied

    def _reload_devices(self, conn, ids: list[str]) -> None:
        found_ids = set()
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            for row in conn.execute(self._device_select(lambda id_column, c=chunk: id_column.in_(c))):
                device = self._make_device(self._convert(row))
                found_ids.add(device.id)
                self._put_device(device)
        for device_id in set(ids) - found_ids:
            self._drop_device(device_id)

    def reload_device(self, device_id: str) -> None:
        """Reads one device again (after a write of the hot path failed: the cache guessed ahead)."""
        with self.lock, self.engine.connect() as conn:
            self._reload_devices(conn, [device_id])

    # ------------------------------------------------------------------ lookups

    def device_for_token(self, token: str):
        """The device owning ``token`` (None: unknown, revoked or decommissioned) — as authenticate_device."""
        device = self.by_token.get(hashlib.sha256(token.encode("utf-8")).hexdigest())
        if device is None or device.decommissioned:
            return None
        return device

    def config_header(self, device) -> str | None:
        """The X-Device-Config value (tag configs in the device's tag order, then its own)."""
        if device.config_generation != self.tag_generation:
            merged: dict[str, str] = {}
            for tag in device.tags or ():
                config = self.tag_configs.get(tag)
                if config:
                    merged.update(config)
            merged.update(device.config or {})
            device.config_header = registry.config_header(merged)
            device.config_generation = self.tag_generation
        return device.config_header

    def firmware_stat(self, release: CachedRelease) -> os.stat_result | None:
        try:
            result = os.stat(release.path)
        except OSError:
            return None
        return result if result.st_size > 0 or release.size == 0 else None
