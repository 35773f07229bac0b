"""What the controller's apps share: settings, database, firmware store, metrics, limits.

Both FastAPI apps carry it as ``app.state.ctx``. The rollout engine (attached
to the management app by ``csi_ota.controller.rollout.attach(app)``) reads
``app.state.ctx.session_factory`` and ``app.state.ctx.settings`` from there.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from csi_ota.controller.mqtt_sync import MqttFilesSync
from sqlalchemy.orm import Session, sessionmaker

from csi_ota.controller.csi_sink import CsiCounters, CsiSink, RotatingFileSink
from csi_ota.controller.db import make_engine, session_factory, session_scope
from csi_ota.controller.metrics import ControllerMetrics, FleetCollector
from csi_ota.controller.models import Device, utcnow
from csi_ota.controller.ratelimit import DeviceRateLimiter
from csi_ota.controller.settings import ControllerSettings
from csi_ota.controller.store import FirmwareStore


@dataclass
class ControllerContext:
    settings: ControllerSettings
    engine: Engine
    session_factory: sessionmaker[Session]
    store: FirmwareStore
    trusted_keys: list[EllipticCurvePublicKey]
    metrics: ControllerMetrics
    rate_limiter: DeviceRateLimiter
    csi_sink: CsiSink
    csi_counters: CsiCounters = field(default_factory=CsiCounters)
    # SQLite has one writer: this process's transactions take turns instead of meeting in SQLite's
    # busy handler, whose sleeps (up to 100 ms each) would dominate tail latency.
    transaction_lock: threading.RLock | None = None
    # `serve --mqtt-acl-dir`: rewrites Mosquitto's files (and reloads it) when device credentials change.
    mqtt_sync: MqttFilesSync | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction (commit on success, rollback on error)."""
        if self.transaction_lock is None:
            with session_scope(self.session_factory) as session:
                yield session
            return
        with self.transaction_lock, session_scope(self.session_factory) as session:
            yield session

    def credentials_changed(self) -> None:
        """Call after committing a device credential change (register, rotate, revoke, decommission)."""
        if self.mqtt_sync is not None:
            self.mqtt_sync.sync(self)

    def now(self) -> dt.datetime:
        return utcnow()

    def flush_csi_counters(self) -> int:
        """Adds the pending per-device CSI counts to the registry; returns devices updated."""
        pending = self.csi_counters.take()
        if not pending:
            return 0
        with self.session() as session:
            for device_id, (messages, payload_bytes) in sorted(pending.items()):
                device = session.get(Device, device_id)
                if device is None:
                    continue
                device.csi_messages_received = (device.csi_messages_received or 0) + messages
                device.csi_bytes_received = (device.csi_bytes_received or 0) + payload_bytes
        return len(pending)

    def close(self) -> None:
        self.flush_csi_counters()
        self.csi_sink.close()
        self.engine.dispose()


def build_context(settings: ControllerSettings, *, pool_size: int = 20, metrics=None) -> ControllerContext:
    """Opens the (already migrated) registry and the firmware store; loads the trusted keys.

    ``metrics``: what the counters are written to (default: this process's Prometheus registry).
    """
    from csi_ota.keys import load_public_key

    trusted = [load_public_key(path) for path in settings.trusted_key_paths]
    engine = make_engine(settings.database_url, pool_size=pool_size)
    factory = session_factory(engine)
    store = FirmwareStore(settings.firmware_dir)
    store.prepare()
    metrics = ControllerMetrics() if metrics is None else metrics
    metrics.add_fleet_collector(FleetCollector(factory, settings.health_check_interval_s, utcnow))
    mqtt_sync = None
    if settings.mqtt_acl_dir is not None:
        from csi_ota.controller.mqtt_sync import MqttFilesSync

        mqtt_sync = MqttFilesSync(
            settings.mqtt_acl_dir,
            controller_user=settings.mqtt_controller_user,
            mosquitto_pid_file=settings.mosquitto_pid_file,
        )
    return ControllerContext(
        mqtt_sync=mqtt_sync,
        settings=settings,
        engine=engine,
        session_factory=factory,
        store=store,
        trusted_keys=trusted,
        metrics=metrics,
        rate_limiter=DeviceRateLimiter(settings.device_rate_per_s, settings.device_rate_burst),
        transaction_lock=threading.RLock() if engine.dialect.name == "sqlite" else None,
        csi_sink=RotatingFileSink(
            settings.data_dir / "csi",
            max_file_bytes=settings.csi_file_max_bytes,
            files_kept=settings.csi_files_kept,
        ),
    )
