"""How many devices polling every 5 minutes does one controller serve with p99 < 100 ms? (not a test)

For SQLite (WAL, synchronous=FULL — the embedded default) and PostgreSQL 15
(started on loopback by tests/services.py), one `csi-ota serve` process:

  * registers the devices straight in its registry;
  * runs a rollout of a 1.2 MB release whose DEVICE_UPDATE_BATCH_SIZE (5)
    updating devices download the image over and over at the seed's
    ~250 KB/s per device while the step runs (the "rollout streams firmware" load);
  * offers version checks at the rate N devices polling every POLL_INTERVAL_S
    produce (open loop: arrivals do not wait for answers, as a fleet would not),
    each with a random device's token, for STEP_S seconds per N;
  * records p50/p99 latency per step and stops at the first N whose p99
    exceeds the 100 ms target. The answer is the largest N that met it.

The load generator shares the 2 cores with the server (its CPU share is
reported). Usage:

    python benchmarks/fleet.py [--step-s 25] [--out benchmarks/results/fleet.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from csi_ota import imagegen, keys  # noqa: E402
from csi_ota.controller.db import make_engine, session_factory, session_scope, upgrade_database  # noqa: E402
from csi_ota.controller.registry import register_device  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import postgres_server, start_controller  # noqa: E402

POLL_INTERVAL_S = 300.0  # "polling every 5 minutes"
P99_TARGET_MS = 100.0
BATCH_SIZE = 5  # DEVICE_UPDATE_BATCH_SIZE
IMAGE_SIZE_BYTES = 1_200_000
FLEET_STEPS = (3_000, 12_000, 48_000, 96_000, 144_000, 192_000)
MAX_IN_FLIGHT = 512
DEVICE_LINK_BYTES_PER_S = 250_000  # the seed's "~250KB/s per device during updates"
DOWNLOAD_CHUNK_BYTES = 16 * 1024
WARMUP_S = 3.0


def register(database_url: str, start: int, count: int) -> list[tuple[str, str]]:
    """Registers devices b<start>..b<start+count-1> straight in the registry (one transaction)."""
    upgrade_database(database_url)
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(session_factory(engine)) as session:
            ids = (f"b{i:06d}" for i in range(start, start + count))
            return [(d, register_device(session, d, actor="bench")) for d in ids]
    finally:
        engine.dispose()


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


async def stream_firmware(
    client: httpx.AsyncClient, url: str, token: str, stop: asyncio.Event, counter: list
):
    """One updating device: downloads the release again and again at the seed's ~250 KB/s per device."""
    while not stop.is_set():
        try:
            async with client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
                async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK_BYTES):
                    counter[0] += len(chunk)
                    if stop.is_set():
                        break
                    await asyncio.sleep(len(chunk) / DEVICE_LINK_BYTES_PER_S)
        except httpx.HTTPError:
            await asyncio.sleep(0.1)


async def run_step(server, credentials, updaters, firmware_url: str, devices: int, step_s: float) -> dict:
    rate = devices / POLL_INTERVAL_S
    latencies: list[float] = []
    errors = 0
    stop = asyncio.Event()
    downloaded = [0]
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=server.device_url, limits=limits, timeout=30) as client:
        streams = [
            asyncio.create_task(stream_firmware(client, firmware_url, token, stop, downloaded))
            for _, token in updaters
        ]
        in_flight: set[asyncio.Task] = set()
        started = time.perf_counter()

        async def check(device_id: str, token: str, record: bool) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                response = await client.get(
                    "/api/ota/version",
                    params={"device_id": device_id, "version": "1.0.0", "state": "valid"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                ok = response.status_code in (200, 204)
            except httpx.HTTPError:
                ok = False
            if record:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        sent = 0
        cpu0 = os.times()
        bytes0 = 0
        while (elapsed := time.perf_counter() - started) < step_s + WARMUP_S:
            due = int(elapsed * rate)
            while sent < due:
                device_id, token = credentials[random.randrange(devices)]
                if len(in_flight) >= MAX_IN_FLIGHT:
                    errors += 1  # the generator cannot even send: count as a miss
                else:
                    task = asyncio.create_task(check(device_id, token, elapsed >= WARMUP_S))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                sent += 1
            if elapsed < WARMUP_S:
                bytes0 = downloaded[0]
            await asyncio.sleep(0.002)
        cpu1 = os.times()
        stop.set()
        await asyncio.gather(*in_flight, return_exceptions=True)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000 if ordered else float("inf")
    return {
        "devices": devices,
        "version_checks_per_s": round(rate, 2),
        "samples": len(latencies),
        "errors": errors,
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "p99_ms": round(p99, 2),
        "firmware_mb_per_s": round((downloaded[0] - bytes0) / step_s / 1e6, 2),
        "load_generator_cpu_share": round(
            (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (step_s + WARMUP_S), 2
        ),
        "meets_target": bool(ordered) and p99 <= P99_TARGET_MS and errors == 0,
    }


def bench_backend(name: str, database_url: str | None, work: Path, step_s: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    key_path = work / "release.pem"
    keys.generate_key(key_path)
    data_dir = work / "controller"
    server = start_controller(
        data_dir,
        database_url=database_url,
        trusted_keys=[keys.public_key_path_for(key_path)],
        extra_env={"DEVICE_UPDATE_BATCH_SIZE": str(BATCH_SIZE)},
    )
    try:
        upload(server, key_path, "1.0.0", 1, 200_000)
        release = upload(server, key_path, "2.0.0", 2, IMAGE_SIZE_BYTES)
        updaters = register(server.database_url, 0, BATCH_SIZE)
        credentials: list[tuple[str, str]] = []
        with server.management_client() as client:
            response = client.post(
                "/api/rollouts",
                json={
                    "release": "2.0.0",
                    "selection": {"devices": [d for d, _ in updaters]},
                    "policy": {"stages": [100], "batch_size": BATCH_SIZE},
                    "previous_release": "1.0.0",
                },
            )
            response.raise_for_status()
        firmware_url = f"/api/ota/firmware/{release['sha256']}"
        steps = []
        for devices in FLEET_STEPS:
            t0 = time.perf_counter()
            credentials += register(
                server.database_url, BATCH_SIZE + len(credentials), devices - len(credentials)
            )
            print(f"{name}: {devices} devices registered ({time.perf_counter() - t0:.0f} s)", flush=True)
            step = asyncio.run(run_step(server, credentials, updaters, firmware_url, devices, step_s))
            steps.append(step)
            print(f"{name}: {json.dumps(step)}", flush=True)
            if not step["meets_target"]:
                break
        passing = [s["devices"] for s in steps if s["meets_target"]]
        return {
            "backend": name,
            "max_devices_p99_under_100ms": max(passing) if passing else 0,
            "steps": steps,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step-s", type=float, default=20.0, help="measured seconds per fleet size")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fleet.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="csi-ota-bench-fleet-") as tmp:
        results.append(bench_backend("sqlite", None, Path(tmp) / "sqlite", args.step_s))
        with postgres_server(fsync=True) as pg:
            results.append(
                bench_backend("postgresql", pg.create_database("fleet"), Path(tmp) / "pg", args.step_s)
            )
    report = {
        "benchmark": "fleet",
        "question": "devices polling every 5 min served with p99 version-check latency < 100 ms during a rollout",
        "poll_interval_s": POLL_INTERVAL_S,
        "p99_target_ms": P99_TARGET_MS,
        "batch_size_streaming": BATCH_SIZE,
        "image_bytes": IMAGE_SIZE_BYTES,
        "streaming_device_bytes_per_s": DEVICE_LINK_BYTES_PER_S,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
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
