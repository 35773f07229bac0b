"""How many devices polling every 5 minutes does one 2-core controller serve with p99 < 100 ms? (not a test)

For SQLite (WAL, synchronous=FULL — the embedded default) and PostgreSQL 15 (fsync on,
started on loopback by tests/services.py), one `csi-ota serve --workers 2`:

  * holds the largest fleet of the run in its registry (written straight into the
    database, devices in the steady state of a polling fleet: they have checked in before);
  * runs a rollout of a 1.2 MB release whose DEVICE_UPDATE_BATCH_SIZE (5) updating devices
    download the image over and over at the seed's ~250 KB/s per device while the steps
    run (the "rollout streams firmware" load);
  * for each fleet size N, offers version checks at the rate N devices polling every
    POLL_INTERVAL_S produce (open loop: requests start on time whatever the answers do, as
    a fleet would; latency from when each was due), each with a random device's token,
    for STEP_S seconds;
  * records p50/p99 latency per step and stops at the first N whose p99 exceeds 100 ms
    (or that has errors). The answer is the largest N that met it.

The load generator (benchmarks/benchlib.py) shares the 2 cores with the controller and
the database (its CPU share is reported). Usage:

    python benchmarks/fleet.py [--step-s 20] [--backends sqlite,postgresql] [--max-devices 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import (  # noqa: E402
    bulk_register,
    device_id_for,
    get_request,
    machine,
    open_loop,
    running_version_for,
    token_for,
    tree_cpu_s,
)
from csi_ota import imagegen, keys  # noqa: E402
from csi_ota.controller.db import default_sqlite_url  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import controller_server, postgres_server  # noqa: E402

POLL_INTERVAL_S = 300.0  # "polling every 5 minutes"
P99_TARGET_MS = 100.0
BATCH_SIZE = 5  # DEVICE_UPDATE_BATCH_SIZE
IMAGE_SIZE_BYTES = 1_200_000
FLEET_STEPS = {"sqlite": (100_000, 333_000), "postgresql": (100_000, 333_000, 1_000_000)}
DEVICE_LINK_BYTES_PER_S = 250_000  # the seed's "~250KB/s per device during updates"
DOWNLOAD_CHUNK_BYTES = 16 * 1024
WARMUP_S = 3.0
HOST = "127.0.0.1"


def upload(server, key_path: Path, version: str, sequence: int, size: int) -> dict:
    image = imagegen.build_app_image(imagegen.ImageSpec(version=version, target_size_bytes=size))
    private = keys.load_private_key(key_path)
    manifest = manifest_for_image(image, sequence=sequence, key_id=keys.key_id_for(private.public_key()))
    with server.management_client() as client:
        response = client.post(
            "/api/releases",
            content=image,
            headers={
                "X-Release-Manifest": base64.b64encode(sign_manifest(manifest, private)).decode(),
                "Content-Type": "application/octet-stream",
            },
        )
    response.raise_for_status()
    return response.json()


class PollRequests:
    """The i-th version check: a random device among the first ``devices`` (picklable for the load process)."""

    def __init__(self, port: int, devices: int) -> None:
        self.port, self.devices = port, devices

    def __call__(self, _i: int) -> bytes:
        index = BATCH_SIZE + random.randrange(self.devices - BATCH_SIZE)
        query = f"/api/ota/version?device_id={device_id_for(index)}&version={running_version_for(index)}&slot=0&state=valid"
        return get_request(HOST, self.port, query, token_for(index))


class Updaters(threading.Thread):
    """The rollout's batch: BATCH_SIZE devices downloading the image again and again at ~250 KB/s each."""

    def __init__(self, device_url: str, firmware_url: str) -> None:
        super().__init__(daemon=True)
        self.device_url, self.firmware_url = device_url, firmware_url
        self.bytes = 0
        self.stopping = threading.Event()

    async def _one(self, client: httpx.AsyncClient, token: str) -> None:
        while not self.stopping.is_set():
            try:
                async with client.stream(
                    "GET", self.firmware_url, headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    if r.status_code != 200:  # the rollout has not assigned it yet
                        await asyncio.sleep(1.0)
                        continue
                    async for chunk in r.aiter_bytes(DOWNLOAD_CHUNK_BYTES):
                        self.bytes += len(chunk)
                        if self.stopping.is_set():
                            return
                        await asyncio.sleep(len(chunk) / DEVICE_LINK_BYTES_PER_S)
            except httpx.HTTPError:
                await asyncio.sleep(0.1)

    async def _main(self) -> None:
        async with httpx.AsyncClient(base_url=self.device_url, timeout=30) as client:
            await asyncio.gather(*[self._one(client, token_for(i)) for i in range(BATCH_SIZE)])

    def run(self) -> None:
        asyncio.run(self._main())


def bench_backend(name: str, database_url: str | None, work: Path, step_s: float, max_devices: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    key_path = work / "release.pem"
    keys.generate_key(key_path)
    data_dir = work / "controller"
    database_url = database_url or default_sqlite_url(data_dir)
    steps_wanted = [n for n in FLEET_STEPS[name] if n <= max_devices] or [max_devices]
    env = {"DEVICE_UPDATE_BATCH_SIZE": str(BATCH_SIZE)}
    args = ["--workers", "2", "--log-level", "error"]
    public = keys.public_key_path_for(key_path)
    with controller_server(
        data_dir, database_url=database_url, trusted_keys=[public], extra_env=env
    ) as server:
        admin = server.admin_token
        upload(server, key_path, "8.0.0", 1, 200_000)
        offered = upload(
            server, key_path, "9.0.0", 2, 200_000
        )  # half the fleet runs it (204), half is offered it
        release = upload(server, key_path, "10.0.0", 3, IMAGE_SIZE_BYTES)
    registered = steps_wanted[-1]
    print(f"{name}: registering {registered} devices …", flush=True)
    seconds = bulk_register(database_url, 0, registered, ("fleet",), offered["id"])
    print(f"{name}: registered in {seconds:.0f} s", flush=True)
    t0 = time.perf_counter()
    with controller_server(
        data_dir,
        database_url=database_url,
        admin_token=admin,
        trusted_keys=[public],
        extra_env=env,
        extra_args=args,
        timeout_s=900,
    ) as server:
        start_s = time.perf_counter() - t0
        print(f"{name}: controller up with {registered} devices cached in {start_s:.0f} s", flush=True)
        with server.management_client() as client:
            client.post(
                "/api/rollouts",
                json={
                    "release": "10.0.0",
                    "selection": {"devices": [device_id_for(i) for i in range(BATCH_SIZE)]},
                    "policy": {"stages": [100], "batch_size": BATCH_SIZE},
                    "previous_release": "9.0.0",  # a stored release (an unknown one is a 404)
                },
            ).raise_for_status()
        updaters = Updaters(server.device_url, f"/api/ota/firmware/{release['sha256']}")
        updaters.start()
        port = int(server.device_url.rsplit(":", 1)[1])
        steps = []
        try:
            for devices in steps_wanted:
                rate = devices / POLL_INTERVAL_S
                print(
                    f"{name}: {devices} devices polling → {rate:.0f} checks/s for {step_s:.0f} s …",
                    flush=True,
                )
                bytes0, t_step = updaters.bytes, time.perf_counter()
                cpu0 = tree_cpu_s([server.process.pid])
                result = open_loop(HOST, port, PollRequests(port, devices), rate, step_s, warmup_s=WARMUP_S)
                server_cpu_share = (tree_cpu_s([server.process.pid]) - cpu0) / (time.perf_counter() - t_step)
                firmware_mb_per_s = (updaters.bytes - bytes0) / (time.perf_counter() - t_step) / 1e6
                step = {
                    "devices_polling": devices,
                    "devices_registered": registered,
                    "version_checks_per_s": round(rate, 1),
                    **result,
                    "firmware_mb_per_s": round(firmware_mb_per_s, 2),
                    "controller_cpu_share": round(server_cpu_share, 2),  # of one core, both workers
                    "meets_target": bool(result["responses"])
                    and result["p99_ms"] <= P99_TARGET_MS
                    and result["errors"] == 0,
                }
                steps.append(step)
                print(f"{name}: {json.dumps(step)}", flush=True)
                if not step["meets_target"]:
                    break
        finally:
            updaters.stopping.set()
            updaters.join(timeout=10)
    passing = [s["devices_polling"] for s in steps if s["meets_target"]]
    return {
        "backend": name,
        "max_devices_p99_under_100ms": max(passing) if passing else 0,
        "registered_devices": registered,
        "controller_start_s": round(start_s, 1),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step-s", type=float, default=20.0, help="measured seconds per fleet size")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--max-devices", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fleet.json")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if not set(backends) <= set(FLEET_STEPS) or not 1_000 <= args.max_devices <= 1_000_000:
        parser.error("--backends: sqlite and/or postgresql; --max-devices 1000..1000000")
    results = []
    with tempfile.TemporaryDirectory(prefix="csi-ota-bench-fleet-") as tmp:
        if "sqlite" in backends:
            results.append(bench_backend("sqlite", None, Path(tmp) / "sqlite", args.step_s, args.max_devices))
        if "postgresql" in backends:
            with postgres_server(fsync=True) as pg:
                url = pg.create_database("fleet")
                results.append(
                    bench_backend("postgresql", url, Path(tmp) / "pg", args.step_s, args.max_devices)
                )
    report = {
        "benchmark": "fleet",
        "question": "devices polling every 5 min served with p99 version-check latency < 100 ms during a rollout",
        "poll_interval_s": POLL_INTERVAL_S,
        "p99_target_ms": P99_TARGET_MS,
        "batch_size_streaming": BATCH_SIZE,
        "image_bytes": IMAGE_SIZE_BYTES,
        "streaming_device_bytes_per_s": DEVICE_LINK_BYTES_PER_S,
        "controller_workers": 2,
        "machine": machine(),
        "reference": "Mender's published sizing: 100,000 devices on 16 vCPU / 24 GB",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(json.dumps({r["backend"]: r["max_devices_p99_under_100ms"] for r in results}))


if __name__ == "__main__":
    main()
