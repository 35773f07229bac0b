"""Shared set-up for the rollout suite and benchmarks/fleet.py: keys, images, releases, devices, clock.

A "world" is a real controller (tests/services.py) with signed releases
uploaded through its management API, devices registered in its registry,
and a virtual clock shared by the controller and the simulated fleet.
"""

from __future__ import annotations

import base64
import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csi_ota import imagegen, keys  # noqa: E402
from csi_ota.controller import registry  # noqa: E402
from csi_ota.controller.db import make_engine, session_factory, session_scope, upgrade_database  # noqa: E402
from csi_ota.controller.rollout.clock import VirtualClock  # noqa: E402
from csi_ota.fleet.behaviours import BehaviourMix  # noqa: E402
from csi_ota.fleet.runner import FleetConfig  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import ControllerServer, start_controller  # noqa: E402

IMAGE_SIZE_BYTES = 24_000  # small images: the suite measures decisions, not bandwidth
HOUR_S = 3600
DAY_S = 24 * HOUR_S
MANIFEST_HEADER = "X-Release-Manifest"


@dataclass(frozen=True)
class ReleaseInfo:
    version: str
    sequence: int
    sha256: str
    image: bytes
    manifest: bytes
    id: int


@dataclass
class World:
    servers: list[ControllerServer]
    key_path: Path
    public_key_path: Path
    clock: VirtualClock
    releases: dict[str, ReleaseInfo] = field(default_factory=dict)
    credentials: list[tuple[str, str]] = field(default_factory=list)

    @property
    def server(self) -> ControllerServer:
        return self.servers[0]

    def management(self, index: int = 0) -> httpx.Client:
        return self.servers[index].management_client()

    def trusted_keys(self) -> list[Any]:
        return [keys.load_public_key(self.public_key_path)]

    def controller_env(self) -> dict[str, str]:
        return controller_env(self.clock, self.key_path)


def make_key(directory: Path) -> tuple[Path, Path]:
    path = Path(directory) / "release.pem"
    keys.generate_key(path)
    return path, keys.public_key_path_for(path)


def build_image(version: str, behaviour: str = "normal") -> bytes:
    return imagegen.build_app_image(
        imagegen.ImageSpec(version=version, behaviour=behaviour, target_size_bytes=IMAGE_SIZE_BYTES)
    )


def controller_env(clock: VirtualClock, key_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **clock.env(),
        "ROLLBACK_SIGNING_KEY": str(key_path),
        "ROLLOUT_TICK_INTERVAL_S": "0.25",
        "ROLLOUT_LEASE_TTL_S": "2",
    }
    env.update(extra)
    return env


def upload_release(server: ControllerServer, key_path: Path, version: str, sequence: int) -> ReleaseInfo:
    image = build_image(version)
    private = keys.load_private_key(key_path)
    manifest = manifest_for_image(image, sequence=sequence, key_id=keys.key_id_for(private.public_key()))
    data = sign_manifest(manifest, private)
    with server.management_client() as client:
        response = client.post(
            "/api/releases",
            content=image,
            headers={
                MANIFEST_HEADER: base64.b64encode(data).decode(),
                "Content-Type": "application/octet-stream",
            },
        )
    assert response.status_code == 201, response.text
    return ReleaseInfo(version, sequence, manifest.sha256, image, data, response.json()["id"])


def register_devices(
    database_url: str, count: int, prefix: str, tags: list[str] = ()
) -> list[tuple[str, str]]:
    """Registers devices straight in the registry (one transaction) with the registry's own function."""
    upgrade_database(database_url)
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(session_factory(engine)) as session:
            return [
                (device_id, registry.register_device(session, device_id, tags=list(tags), actor="test:fleet"))
                for device_id in (f"{prefix}{i:05d}" for i in range(count))
            ]
    finally:
        engine.dispose()


def virtual_clock(scale: float, virtual_start: str = "2026-11-28T22:00:00Z") -> VirtualClock:
    start = dt.datetime.fromisoformat(virtual_start.replace("Z", "+00:00"))
    return VirtualClock(scale=scale, origin_real_s=time.time(), origin_virtual=start)


def start_world(
    data_dir: Path,
    *,
    devices: int,
    scale: float,
    versions: tuple[str, ...] = ("1.0.0", "2.0.0"),
    database_url: str | None = None,
    prefix: str = "sim",
    extra_env: dict[str, str] | None = None,
    clock: VirtualClock | None = None,
) -> World:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path, public_path = make_key(data_dir)
    clock = clock or virtual_clock(scale)
    env = controller_env(clock, key_path, **(extra_env or {}))
    server = start_controller(
        data_dir / "controller", database_url=database_url, trusted_keys=[public_path], extra_env=env
    )
    world = World([server], key_path, public_path, clock)
    try:
        for sequence, version in enumerate(versions, start=1):
            world.releases[version] = upload_release(server, key_path, version, sequence)
        world.credentials = register_devices(server.database_url, devices, prefix)
    except BaseException:
        server.kill9()
        raise
    return world


def create_rollout(world: World, version: str, policy: dict[str, Any], **body: Any) -> dict[str, Any]:
    """POST /api/rollouts; the rollback target is the world's first release (devices start on it)."""
    if "previous_release" not in body and "1.0.0" in world.releases and version != "1.0.0":
        body["previous_release"] = "1.0.0"
    with world.management() as client:
        response = client.post(
            "/api/rollouts",
            json={
                "release": version,
                "selection": body.pop("selection", {"all": True}),
                "policy": policy,
                **body,
            },
        )
    assert response.status_code == 201, response.text
    return response.json()


def rollout_detail(world: World, rollout_id: int, index: int = 0) -> dict[str, Any]:
    with world.management(index) as client:
        response = client.get(f"/api/rollouts/{rollout_id}")
    assert response.status_code == 200, response.text
    return response.json()


def rollout_devices(world: World, rollout_id: int, index: int = 0) -> list[dict[str, Any]]:
    with world.management(index) as client:
        response = client.get(f"/api/rollouts/{rollout_id}/devices")
    assert response.status_code == 200, response.text
    return response.json()


def fleet_config(world: World, **overrides: Any) -> FleetConfig:
    behaviours = overrides.pop("behaviours", "healthy")
    values: dict[str, Any] = {
        "device_urls": [s.device_url for s in world.servers],
        "credentials": world.credentials,
        "trusted_keys": world.trusted_keys(),
        "behaviours": BehaviourMix.parse(behaviours),
        "initial_version": "1.0.0",
        "initial_sequence": world.releases["1.0.0"].sequence,
        "time_scale": world.clock.scale,
        "management_url": world.server.management_url,
        "admin_token": world.server.admin_token,
    }
    values.update(overrides)
    return FleetConfig(**values)


def stop_world(world: World) -> None:
    for server in world.servers:
        server.stop()
