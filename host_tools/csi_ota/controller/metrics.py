"""Prometheus metrics of one controller process (served at GET /metrics on the management port).

Counters count this process's work (with ``serve --workers N``, the first process adds
the other workers' counts at each scrape: csi_ota.controller.workers); the device gauges are read from the
registry at scrape time, so every process of a scale-out reports the same
fleet view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from csi_ota.controller.models import Device

disable_created_metrics()  # no *_created samples: counters only


class FleetCollector:
    """devices_by_state / devices_by_version gauges, queried when Prometheus scrapes."""

    def __init__(self, session_factory, health_check_interval_s: int, now: Callable[[], dt.datetime]) -> None:
        self._session_factory = session_factory
        self._interval_s = health_check_interval_s
        self._now = now

    def collect(self):
        by_state = GaugeMetricFamily(
            "csi_ota_devices_by_ota_state", "Devices by last OTA state", labels=["state"]
        )
        by_version = GaugeMetricFamily(
            "csi_ota_devices_by_version", "Devices by running version", labels=["version"]
        )
        by_health = GaugeMetricFamily(
            "csi_ota_devices_by_health", "Devices by stored health", labels=["health"]
        )
        with self._session_factory() as session:
            active = Device.decommissioned.is_(False)
            for state, count in session.execute(
                select(Device.last_ota_state, func.count()).where(active).group_by(Device.last_ota_state)
            ):
                by_state.add_metric([state or "none"], count)
            for version, count in session.execute(
                select(Device.version, func.count()).where(active).group_by(Device.version)
            ):
                by_version.add_metric([version or "unknown"], count)
            for health, count in session.execute(
                select(Device.health, func.count()).where(active).group_by(Device.health)
            ):
                by_health.add_metric([health], count)
        yield by_state
        yield by_version
        yield by_health


class _BeforeScrape:
    """Registered first: runs the hooks (e.g. adding other workers' counts) before any metric is read."""

    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []

    def collect(self):
        for hook in self.hooks:
            hook()
        return iter(())


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._before_scrape = _BeforeScrape()
        self.registry.register(self._before_scrape)
        self.downloads = Counter(
            "csi_ota_firmware_downloads",
            "Firmware download responses started",
            ["status"],
            registry=self.registry,
        )
        self.bytes_served = Counter(
            "csi_ota_firmware_bytes_served", "Firmware bytes sent to devices", registry=self.registry
        )
        self.bytes_zero_copy = Counter(
            "csi_ota_firmware_bytes_zero_copy",
            "Firmware bytes sent with sendfile(2) (part of csi_ota_firmware_bytes_served)",
            registry=self.registry,
        )
        self.status_reports = Counter(
            "csi_ota_status_reports",
            "Status reports stored (repeats excluded)",
            ["state"],
            registry=self.registry,
        )
        self.version_checks = Counter(
            "csi_ota_version_checks", "Version checks answered", ["result"], registry=self.registry
        )
        self.heartbeats = Counter(
            "csi_ota_heartbeats", "Heartbeats recorded", ["transport"], registry=self.registry
        )
        self.csi_messages = Counter(
            "csi_ota_csi_messages", "CSI messages received", ["transport"], registry=self.registry
        )
        self.releases_rejected = Counter(
            "csi_ota_releases_rejected", "Release uploads refused", registry=self.registry
        )

    def before_scrape(self, hook: Callable[[], None]) -> None:
        self._before_scrape.hooks.append(hook)

    def add_fleet_collector(self, collector: FleetCollector) -> None:
        self.registry.register(collector)
