"""Runs a simulated fleet against a real controller and returns a JSON-ready summary.

All devices live in one asyncio loop and share one HTTP connection pool.
Timing is virtual: ``check_interval_s`` and ``heartbeat_interval_s`` are the
devices' configured intervals, divided by ``time_scale`` to get wall-clock
seconds — run the controller with the same scale (ROLLOUT_TIME_SCALE) and a
24 h soak passes in seconds.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from csi_ota.controller.client import management_verify
from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.fleet.behaviours import BehaviourMix
from csi_ota.fleet.device import FleetContext, FleetStats, FleetTiming, SimulatedDevice

# The followed rollout is over for the fleet: it ended, or halted with nothing more to do
# (a halt with rollback=auto goes on as rolling_back until the devices are back).
TERMINAL_ROLLOUT_STATES = ("completed", "aborted", "rolled_back", "halted")
# The run kept up when at least this share of the periodic checks and heartbeats went out on time.
KEPT_UP_SHARE = 0.9
MIN_ACTIONS_TO_JUDGE_LOAD = 50
ROLLOUT_POLL_INTERVAL_S = 0.5
REGISTER_CONCURRENCY = 8
STOP_GRACE_S = 10.0
MAX_DEVICES = 100_000


@dataclass
class FleetConfig:
    device_urls: list[str]
    credentials: list[tuple[str, str]]  # (device id, token)
    trusted_keys: list[Any]
    behaviours: BehaviourMix = field(default_factory=lambda: BehaviourMix.parse("healthy"))
    initial_version: str = "1.0.0"
    initial_sequence: int = 0
    check_interval_s: float = 3600.0  # virtual seconds (the seed's hourly check)
    heartbeat_interval_s: float = 300.0  # virtual seconds (HEALTH_CHECK_INTERVAL_SEC)
    time_scale: float = 1.0
    duration_s: float = 60.0  # wall-clock bound on the whole run
    rollout_id: int | None = None  # stop when this rollout ends
    settle_s: float = 0.0  # keep running this long after the rollout ended
    management_url: str | None = None
    admin_token: str | None = None
    seed: int = 0
    # Requests in flight at once (device.py FleetContext.slots): every request scans the pool's
    # connections, so more connections cost the fleet's own CPU; 16 keep up with 1,000 devices
    # checking every 20 s on a busy 2-core machine.
    max_connections: int = 16
    verify: Any = False
    boot_s: float = 0.05
    slow_link_bytes_per_s: float = 64 * 1024
    mqtt_host: str | None = None  # heart-beat over MQTT for the first mqtt_devices devices
    mqtt_port: int = 1883
    mqtt_devices: int = 0
    virtual_esp32: int = 0  # the last N credentials run as csi-ota-sim processes (fleet/virtual.py)
    ca_cert: str | None = None  # CA file the virtual ESP32-S3 devices trust (HTTPS)

    def __post_init__(self) -> None:
        if not self.device_urls:
            raise CsiOtaError("give at least one controller URL")
        if not (0 < len(self.credentials) <= MAX_DEVICES):
            raise CsiOtaError(f"a fleet has 1 to {MAX_DEVICES} devices")
        if self.time_scale <= 0 or self.check_interval_s <= 0 or self.heartbeat_interval_s <= 0:
            raise CsiOtaError("time scale and intervals must be positive")
        if self.duration_s <= 0:
            raise CsiOtaError("duration must be positive")
        if not (0 <= self.virtual_esp32 <= len(self.credentials)):
            raise CsiOtaError("--virtual-esp32 needs as many credentials (the last N are used)")

    @property
    def simulated_credentials(self) -> list[tuple[str, str]]:
        return self.credentials[: len(self.credentials) - self.virtual_esp32]

    @property
    def virtual_credentials(self) -> list[tuple[str, str]]:
        return self.credentials[len(self.credentials) - self.virtual_esp32 :]

    def timing(self) -> FleetTiming:
        return FleetTiming(
            check_interval_s=self.check_interval_s / self.time_scale,
            heartbeat_interval_s=self.heartbeat_interval_s / self.time_scale,
            time_scale=self.time_scale,
            boot_s=self.boot_s,
            slow_link_bytes_per_s=self.slow_link_bytes_per_s,
        )


# --------------------------------------------------------------------------- credentials


async def register_devices_async(
    management_url: str,
    admin_token: str,
    device_ids: list[str],
    *,
    tags: list[str] = (),
    verify: str | bool | None = None,
) -> list[tuple[str, str]]:
    """Registers devices through the management API; returns (id, token) in order."""
    semaphore = asyncio.Semaphore(REGISTER_CONCURRENCY)
    headers = {"Authorization": f"Bearer {admin_token}"}
    verify = management_verify() if verify is None else verify  # the management port speaks TLS
    async with httpx.AsyncClient(
        base_url=management_url, headers=headers, timeout=30, verify=verify
    ) as client:

        async def one(device_id: str) -> tuple[str, str]:
            async with semaphore:
                response = await client.post(
                    "/api/devices", json={"device_id": device_id, "tags": list(tags)}
                )
            if response.status_code != 201:
                raise CsiOtaError(
                    f"registering {device_id}: HTTP {response.status_code} {response.text[:200]}"
                )
            return device_id, response.json()["token"]

        return list(await asyncio.gather(*(one(d) for d in device_ids)))


def save_credentials(path: Path, credentials: list[tuple[str, str]]) -> Path:
    """Writes the tokens (mode 0600, atomically): they are secrets."""
    data = json.dumps([{"device_id": d, "token": t} for d, t in credentials]).encode()
    return write_atomic(path, data, mode=0o600)


def load_credentials(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(Path(path).read_text())
        return [(str(entry["device_id"]), str(entry["token"])) for entry in data]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CsiOtaError(f"{path}: not a fleet credentials file ({exc})") from exc


# --------------------------------------------------------------------------- running


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _fetch_rollout(client: httpx.AsyncClient, config: FleetConfig) -> dict[str, Any] | None:
    """The followed rollout from the management API (URL and token read each time: they may change)."""
    headers = {"Authorization": f"Bearer {config.admin_token}"} if config.admin_token else {}
    try:
        response = await client.get(
            f"{config.management_url}/api/rollouts/{config.rollout_id}", headers=headers
        )
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


class Fleet:
    """A running fleet; ``devices`` and ``stats`` can be inspected while and after it runs."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.stats = FleetStats()
        self.stop = asyncio.Event()
        self.devices: list[SimulatedDevice] = []
        self.rollout: dict[str, Any] | None = None
        self.started = 0.0
        self.ended_by = ""
        self.mqtt = None
        self.mqtt_connected = 0
        self.virtual = None  # VirtualEsp32Fleet when config.virtual_esp32 > 0

    async def run(self, on_update: Callable[[Fleet], None] | None = None) -> dict[str, Any]:
        config = self.config
        simulated = config.simulated_credentials
        behaviours = config.behaviours.assign(len(simulated), seed=str(config.seed))
        limits = httpx.Limits(
            max_connections=config.max_connections, max_keepalive_connections=config.max_connections
        )
        if config.virtual_esp32 > 0:
            # Build (or check) csi-ota-sim before any device runs: a build that takes minutes
            # while the followed rollout offers the release would leave those devices silent.
            from csi_ota.sim.runner import build_sim

            await asyncio.to_thread(build_sim)
        self.started = time.monotonic()
        if config.mqtt_host and config.mqtt_devices > 0:
            from csi_ota.fleet.mqtt import MqttDevices

            self.mqtt = MqttDevices(
                config.mqtt_host, config.mqtt_port, config.credentials[: config.mqtt_devices]
            )
            self.mqtt_connected = await asyncio.to_thread(self.mqtt.start)
        async with httpx.AsyncClient(limits=limits, verify=config.verify, http2=False) as client:
            ctx = FleetContext(
                client=client,
                device_urls=list(config.device_urls),
                trusted_keys=list(config.trusted_keys),
                timing=config.timing(),
                stats=self.stats,
                stop=self.stop,
                mqtt_publish=self.mqtt.publish if self.mqtt is not None else None,
                slots=asyncio.Semaphore(config.max_connections),
            )
            self.devices = [
                SimulatedDevice(
                    device_id,
                    token,
                    behaviour,
                    ctx,
                    version=config.initial_version,
                    highest_sequence=config.initial_sequence,
                    seed=config.seed,
                )
                for (device_id, token), behaviour in zip(simulated, behaviours, strict=True)
            ]
            tasks = [asyncio.create_task(d.run()) for d in self.devices]
            try:
                if config.virtual_esp32 > 0:
                    await asyncio.to_thread(self._start_virtual)
                await self._watch(on_update)
            finally:
                self.stop.set()
                if self.virtual is not None:
                    await asyncio.to_thread(self.virtual.stop)
                done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
                for task in pending:
                    task.cancel()
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        self.stats.errors[f"device_task:{type(task.exception()).__name__}"] += 1
                if self.mqtt is not None:
                    await asyncio.to_thread(self.mqtt.stop)
        return self.summary()

    def _start_virtual(self) -> None:
        from csi_ota.fleet.virtual import VirtualEsp32Fleet

        config = self.config
        self.virtual = VirtualEsp32Fleet(
            config.virtual_credentials,
            version_check_url=f"{config.device_urls[0].rstrip('/')}/api/ota/version",
            trusted_keys=list(config.trusted_keys),
            initial_version=config.initial_version,
            check_interval_s=config.check_interval_s,
            heartbeat_interval_s=config.heartbeat_interval_s,
            time_scale=config.time_scale,
            ca_cert=config.ca_cert,
        )
        self.virtual.start()

    async def _watch(self, on_update: Callable[[Fleet], None] | None) -> None:
        config = self.config
        deadline = self.started + config.duration_s
        management = None
        if config.rollout_id is not None and config.management_url:
            management = httpx.AsyncClient(timeout=10, verify=management_verify(config.ca_cert))
        ended_at = None
        try:
            while time.monotonic() < deadline:
                if management is not None:
                    detail = await _fetch_rollout(management, config)
                    if detail is not None:
                        self.rollout = detail
                        if detail["state"] in TERMINAL_ROLLOUT_STATES and ended_at is None:
                            ended_at = time.monotonic()
                if on_update is not None:
                    on_update(self)
                if ended_at is not None and time.monotonic() - ended_at >= config.settle_s:
                    self.ended_by = f"rollout {self.rollout['state']}"
                    return
                await asyncio.sleep(ROLLOUT_POLL_INTERVAL_S)
            self.ended_by = "duration"
        finally:
            if management is not None:
                await management.aclose()

    def summary(self) -> dict[str, Any]:
        stats = self.stats
        by_behaviour: dict[str, Counter] = {}
        for device in self.devices:
            by_behaviour.setdefault(device.behaviour, Counter())[device.version] += 1
        latencies = stats.version_check_latencies_s
        duration_s = max(time.monotonic() - self.started, 1e-9)
        timing = self.config.timing()
        alive = [d for d in self.devices if not d.silent]
        requested_per_s = len(alive) * (1 / timing.check_interval_s + 1 / timing.heartbeat_interval_s)
        on_time = stats.actions_due - stats.actions_late
        kept_up = (
            stats.actions_due < MIN_ACTIONS_TO_JUDGE_LOAD or on_time >= KEPT_UP_SHARE * stats.actions_due
        )
        summary = {
            "devices": len(self.devices),
            "duration_s": round(time.monotonic() - self.started, 3),
            "ended_by": self.ended_by,
            "time_scale": self.config.time_scale,
            "behaviours": {b: sum(c.values()) for b, c in by_behaviour.items()},
            "versions": dict(Counter(d.version for d in self.devices)),
            "versions_by_behaviour": {b: dict(c) for b, c in by_behaviour.items()},
            "silent_devices": sum(1 for d in self.devices if d.silent),
            "requests": dict(stats.requests),
            "errors": dict(stats.errors),
            "rejected": dict(stats.rejected),
            "outcomes": dict(stats.outcomes),
            "max_concurrent_downloads": stats.max_downloads_in_flight,
            "virtual_esp32": [] if self.virtual is None else self.virtual.summary(),
            "mqtt_devices_connected": self.mqtt_connected,
            "mqtt_heartbeats": stats.requests.get("heartbeat_mqtt", 0),
            "bytes_downloaded": stats.bytes_downloaded,
            "link_drops": stats.link_drops,
            "range_resumes": stats.range_resumes,
            "power_cuts": stats.power_cuts,
            "load": {
                "requested_per_s": round(requested_per_s, 1),
                "achieved_per_s": round(on_time / duration_s, 1),
                "actions_due": stats.actions_due,
                "actions_late": stats.actions_late,
                "kept_up": kept_up,
            },
            "version_check_latency_ms": {
                "count": len(latencies),
                "p50": None if not latencies else round(statistics.median(latencies) * 1000, 2),
                "p99": None if not latencies else round(_percentile(latencies, 0.99) * 1000, 2),
            },
        }
        if self.rollout is not None:
            summary["rollout"] = {
                key: self.rollout.get(key)
                for key in ("id", "name", "release", "state", "current_stage", "halt_reason", "counts")
            }
            summary["rollout"]["stages"] = [
                {k: s.get(k) for k in ("stage", "percent", "state", "members", "counts")}
                for s in self.rollout.get("stages", [])
            ]
            summary["rollout"]["gate_decisions"] = [
                e["message"] for e in self.rollout.get("events", []) if e["kind"] not in ("operator",)
            ]
        return summary


def run_fleet(
    config: FleetConfig, on_update: Callable[[Fleet], None] | None = None
) -> tuple[Fleet, dict[str, Any]]:
    """Runs the fleet to the end (rollout finished or duration over); returns it and its summary."""
    fleet = Fleet(config)
    summary = asyncio.run(fleet.run(on_update))
    return fleet, summary


def run_problems(summary: dict[str, Any]) -> list[str]:
    """Why a run did not go well (empty: it did): failed devices, a halted rollout, too much load."""
    problems = []
    load = summary.get("load", {})
    if not load.get("kept_up", True):
        problems.append(
            f"the fleet could not keep up with the requested load: {load['achieved_per_s']} of "
            f"{load['requested_per_s']} checks and heartbeats per second went out on time "
            f"({load['actions_late']} of {load['actions_due']} late); use fewer devices or a lower --time-scale"
        )
    rollout = summary.get("rollout") or {}
    counts = rollout.get("counts") or {}
    failed = counts.get("failed", 0) + counts.get("rollback_failed", 0)
    if failed:
        problems.append(f"{failed} devices failed in rollout {rollout.get('id')}")
    if rollout.get("state") in ("halted", "rolling_back", "rolled_back"):
        problems.append(
            f"rollout {rollout.get('id')} {rollout['state']}: {rollout.get('halt_reason') or ''}".rstrip(": ")
        )
    crashed = sum(n for key, n in summary.get("errors", {}).items() if key.startswith("device_task:"))
    if crashed:
        problems.append(f"{crashed} simulated devices crashed")
    return problems
