"""A rollout engine on a real SQLite registry, driven tick by tick with explicit times.

Device behaviour is written through the controller's own registry functions
(record_status, record_heartbeat, reconcile_version_check) — exactly what the
device API does for a request — so the engine sees what it would see in
production, without HTTP in between.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rollout_harness import build_image
from sqlalchemy import select

from csi_ota import keys
from csi_ota.controller import admin as admin_lib
from csi_ota.controller import registry, releases
from csi_ota.controller.db import make_engine, session_factory, session_scope, upgrade_database
from csi_ota.controller.models import Device, Release
from csi_ota.controller.rollout import service
from csi_ota.controller.rollout.clock import VirtualClock
from csi_ota.controller.rollout.engine import RolloutEngine
from csi_ota.controller.rollout.models import Rollout, RolloutDevice
from csi_ota.manifest import manifest_for_image, sign_manifest

START = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


class EngineWorld:
    def __init__(
        self,
        tmp_path: Path,
        devices: int,
        *,
        versions=("1.0.0", "2.0.0"),
        start: dt.datetime = START,
        checked_in: bool = True,  # False: registered, never heard from (version unknown)
    ):
        self.url = f"sqlite:///{tmp_path / 'registry.db'}"
        upgrade_database(self.url)
        self.db = make_engine(self.url)
        self.sessions = session_factory(self.db)
        self.key_path = tmp_path / "release.pem"
        keys.generate_key(self.key_path)
        self.now = start
        self.clock = VirtualClock()  # virtual time = the explicit times these tests pass
        self.releases: dict[str, int] = {}
        private = keys.load_private_key(self.key_path)
        with session_scope(self.sessions) as session:
            for sequence, version in enumerate(versions, start=1):
                image = build_image(version)
                manifest = manifest_for_image(
                    image, sequence=sequence, key_id=keys.key_id_for(private.public_key())
                )
                release = releases.insert_release(
                    session, manifest, sign_manifest(manifest, private), actor="test"
                )
                self.releases[version] = release.id
            self.device_ids = [f"dev{i:04d}" for i in range(devices)]
            for device_id in self.device_ids:
                registry.register_device(session, device_id, actor="test")
            # Signed rollbacks need a rollout created by an admin (rollback_policy, issue 12 H3).
            admin_lib.create_admin(session, "rollout-test", "admin", actor="test")
        for device_id in self.device_ids if checked_in else ():
            self.check(device_id, "1.0.0", slot=0)
            self.heartbeat(device_id, "1.0.0")
        self.seq: dict[str, int] = {}
        self.engine = self.new_engine("engine-a")

    def new_engine(self, holder: str, ttl_s: float = 10.0) -> RolloutEngine:
        return RolloutEngine(
            self.sessions, clock=self.clock, holder=holder, lease_ttl_s=ttl_s, signing_key=self.key_path
        )

    # ------------------------------------------------------------------ time and the engine

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def tick(self, engine: RolloutEngine | None = None) -> bool:
        self.advance(0.001)
        return (engine or self.engine).tick(now_real=self.now)

    def create(self, policy: dict, version: str = "2.0.0", selection=None, **kwargs) -> int:
        with session_scope(self.sessions) as session:
            rollout = service.create_rollout(
                session,
                release=version,
                selection=selection or {"all": True},
                policy=policy,
                actor=kwargs.pop("actor", "admin:rollout-test"),
                clock=self.clock,
                **kwargs,
            )
            return rollout.id

    # ------------------------------------------------------------------ what a device does

    def _device(self, session, device_id: str) -> Device:
        return session.get(Device, device_id)

    def check(self, device_id: str, version: str, state: str = "valid", slot: int | None = None) -> bool:
        """A version check as the device API handles it; True when it received a manifest (took the offer)."""
        self.advance(0.001)
        with session_scope(self.sessions) as session:
            device = self._device(session, device_id)
            registry.reconcile_version_check(
                device, {"version": version, "state": state, "slot": slot}, self.now
            )
            release = registry.offered_release(device)
            if release is not None:
                registry.note_offer_taken(device, release, self.now)
            return release is not None

    def heartbeat(self, device_id: str, version: str, ota_state: str = "valid", **fields) -> None:
        self.advance(0.001)
        with session_scope(self.sessions) as session:
            registry.record_heartbeat(
                session,
                self._device(session, device_id),
                {"version": version, "ota_state": ota_state, **fields},
                self.now,
            )

    def report(
        self, device_id: str, state: str, reason: str = "ok", *, version: str, target: str = "2.0.0"
    ) -> None:
        self.advance(0.001)
        self.seq[device_id] = self.seq.get(device_id, 0) + 1
        with session_scope(self.sessions) as session:
            release = session.get(Release, self.releases[target]) if target in self.releases else None
            registry.record_status(
                session,
                self._device(session, device_id),
                {
                    "seq": self.seq[device_id],
                    "state": state,
                    "reason": reason,
                    "version": version,
                    "target_version": target,
                    "target_sha256": release.sha256 if release else None,
                },
                self.now,
            )

    def install(
        self, device_id: str, *, old: str = "1.0.0", new: str = "2.0.0", heartbeat: bool = True
    ) -> None:
        self.report(device_id, "downloading", version=old, target=new)
        self.report(device_id, "downloaded", version=old, target=new)
        self.report(device_id, "pending_verify", version=new, target=new)
        self.report(device_id, "success", version=new, target=new)
        if heartbeat:
            self.heartbeat(device_id, new)

    def fail_selftest(self, device_id: str, *, old: str = "1.0.0", new: str = "2.0.0") -> None:
        self.report(device_id, "downloading", version=old, target=new)
        self.report(device_id, "downloaded", version=old, target=new)
        self.report(device_id, "pending_verify", version=new, target=new)
        self.report(device_id, "rolled_back", "selftest", version=old, target=new)
        self.heartbeat(device_id, old)

    def settle(self, installed: list[str], failed: list[str]) -> None:
        """These devices install 2.0.0, those fail its self-test; then the engine ticks."""
        for device_id in installed:
            self.install(device_id)
        for device_id in failed:
            self.fail_selftest(device_id)
        self.tick()

    # ------------------------------------------------------------------ reading state

    def rollout(self, rollout_id: int) -> Rollout:
        with self.sessions() as session:
            return session.get(Rollout, rollout_id)

    def states(self, rollout_id: int) -> dict[str, RolloutDevice]:
        with self.sessions() as session:
            rows = session.scalars(select(RolloutDevice).where(RolloutDevice.rollout_id == rollout_id))
            return {rd.device_id: rd for rd in rows}

    def in_state(self, rollout_id: int, state: str) -> list[str]:
        return sorted(d for d, rd in self.states(rollout_id).items() if rd.state == state)

    def assigned(self, device_id: str) -> int | None:
        with self.sessions() as session:
            return session.get(Device, device_id).assigned_release_id

    def detail(self, rollout_id: int) -> dict:
        with self.sessions() as session:
            return service.rollout_detail(session, session.get(Rollout, rollout_id))
