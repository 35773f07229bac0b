"""A fleet on the engine's explicit clock: devices act at exact virtual times, the engine ticks between.

Nothing here depends on the machine's speed: every device action (version
check, status report, heartbeat) is applied through the controller's own
registry functions at its own virtual instant, and the engine ticks every
``tick_s`` virtual seconds — so a week of rollout with hourly checks runs in
seconds and gives the same verdicts on a busy machine as on an idle one.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from dataclasses import dataclass, field

from engine_world import EngineWorld
from sqlalchemy import event, select

from csi_ota.controller import registry
from csi_ota.controller.db import session_scope
from csi_ota.controller.models import Device, Release

# Virtual seconds from taking the offer to each report (download, reboot, self-test).
DOWNLOADED_AFTER_S = 60
BOOTED_AFTER_S = 90
VERDICT_AFTER_S = 120


@dataclass
class FleetDevice:
    device_id: str
    behaviour: str  # "healthy" | "fail_selftest" | "silent_controller" (heard only through the control group)
    version: str = "1.0.0"
    slot: int = 0
    ota_state: str = "valid"
    seq: int = 0
    busy: bool = False  # between taking an offer and its verdict
    history_version: str = "1.0.0"  # what it ran before the update it is installing
    history: list[str] = field(default_factory=list)


class VirtualFleet:
    def __init__(
        self,
        world: EngineWorld,
        behaviours: dict[str, str],
        *,
        check_interval_s: float = 3600,
        heartbeat_interval_s: float = 300,
        report_intervals: bool = False,
        seed: int = 1,
    ) -> None:
        self.world = world
        # Durability is not under test here and fsyncs would dominate: thousands of short commits.
        world.db.dispose()
        event.listen(world.db, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA synchronous=OFF"))
        self.check_interval_s = check_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.report_intervals = report_intervals
        self.rng = random.Random(seed)
        self.devices = {d: FleetDevice(d, behaviours.get(d, "healthy")) for d in world.device_ids}
        self.queue: list[tuple[float, int, str, str, dict]] = []
        self.counter = 0
        self.silenced: set[str] = set()
        origin = world.now.timestamp()
        for device_id in world.device_ids:  # random phases, as real devices have
            self.at(origin + self.rng.uniform(0, check_interval_s), device_id, "check")
            self.at(origin + self.rng.uniform(0, heartbeat_interval_s), device_id, "heartbeat")
        with world.sessions() as session:
            self.releases = {r.id: (r.version, r.sha256, r.rollback) for r in session.query(Release)}

    def at(self, when_s: float, device_id: str, action: str, **data) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (when_s, self.counter, device_id, action, data))

    # ------------------------------------------------------------------ running

    def run_until(self, end: dt.datetime, tick_s: float = 60.0, stop=None) -> None:
        """Device actions in time order; an engine tick every ``tick_s``; ``stop()`` ends early."""
        world = self.world
        next_tick = world.now.timestamp() + tick_s
        while world.now < end:
            with session_scope(world.sessions) as session, session.no_autoflush:
                rows = {d.id: d for d in session.scalars(select(Device))}
                while self.queue and self.queue[0][0] <= next_tick:
                    when_s, _, device_id, action, data = heapq.heappop(self.queue)
                    world.now = dt.datetime.fromtimestamp(when_s, dt.UTC)
                    self.act(session, rows[device_id], self.devices[device_id], action, data)
            world.now = dt.datetime.fromtimestamp(next_tick, dt.UTC)
            world.engine.tick(now_real=world.now)
            next_tick += tick_s
            if stop is not None and stop():
                return

    def act(self, session, row: Device, device: FleetDevice, action: str, data: dict) -> None:
        now_s = self.world.now.timestamp()
        if device.device_id in self.silenced:
            self.at(now_s + (self.check_interval_s if action == "check" else self.heartbeat_interval_s),
                    device.device_id, action)  # fmt: skip
            return
        if action == "heartbeat":
            beat = {"version": device.version, "ota_state": device.ota_state}
            if self.report_intervals:
                beat |= {
                    "check_interval_sec": int(self.check_interval_s),
                    "heartbeat_interval_sec": int(self.heartbeat_interval_s),
                }
            registry.record_heartbeat(session, row, beat, self.world.now)
            self.at(now_s + self.heartbeat_interval_s, device.device_id, "heartbeat")
        elif action == "check":
            self.at(now_s + self.check_interval_s, device.device_id, "check")
            query = {"version": device.version, "slot": device.slot, "state": device.ota_state}
            registry.reconcile_version_check(row, query, self.world.now)
            release = registry.offered_release(row)
            if release is None or device.busy:
                return
            registry.note_offer_taken(row, release, self.world.now)
            device.busy = True
            device.history.append(f"took {release.version}")
            target = {"target": release.version, "sha256": release.sha256, "rollback": release.rollback}
            self.report(session, row, device, "downloading", **target)
            self.at(now_s + DOWNLOADED_AFTER_S, device.device_id, "downloaded", **target)
            self.at(now_s + BOOTED_AFTER_S, device.device_id, "booted", **target)
            self.at(now_s + VERDICT_AFTER_S, device.device_id, "verdict", **target)
        elif action == "downloaded":
            self.report(session, row, device, "downloaded", **data)
        elif action == "booted":
            device.version, device.slot, device.ota_state = data["target"], 1 - device.slot, "pending_verify"
            self.report(session, row, device, "pending_verify", **data)
        elif action == "verdict":
            device.busy = False
            if device.behaviour == "fail_selftest" and not data["rollback"]:
                device.version, device.slot, device.ota_state = (
                    device.history_version,
                    1 - device.slot,
                    "valid",
                )
                self.report(session, row, device, "rolled_back", "selftest", **data)
            else:
                device.ota_state = "valid"
                self.report(session, row, device, "success", **data)
            registry.record_heartbeat(
                session, row, {"version": device.version, "ota_state": device.ota_state}, self.world.now
            )

    def report(self, session, row, device: FleetDevice, state: str, reason: str = "ok", **target) -> None:
        if state == "downloading":
            device.history_version = device.version
        device.seq += 1
        registry.record_status(
            session,
            row,
            {
                "seq": device.seq,
                "state": state,
                "reason": reason,
                "version": device.version,
                "target_version": target["target"],
                "target_sha256": target["sha256"],
            },
            self.world.now,
        )
