"""Benchmark of `csi-ota serve` against Debian's nginx on loopback (not a test; writes JSON).

Measures, in one run:
  1. aggregate firmware download throughput at 50 and 200 concurrent keep-alive
     clients: the controller streaming the image itself, nginx serving the same
     file, and nginx in front of the controller with X-Accel-Redirect (the
     controller authorises, nginx sends the bytes);
  2. version checks per second with p50/p99 latency, 10,000 registered devices,
     each request with a random device's token.

The load generator is a small asyncio HTTP/1.1 client in one separate
process; it shares the machine's cores with the servers, so absolute numbers
are low-end — compare the ratios. Usage:

    python benchmarks/serve.py [--duration 8] [--out benchmarks/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from csi_ota import imagegen, keys  # noqa: E402
from csi_ota.controller.db import make_engine, session_factory, session_scope  # noqa: E402
from csi_ota.controller.registry import register_device  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import controller_server, nginx_server, postgres_server  # noqa: E402

IMAGE_SIZE_BYTES = 1_200_000
READ_CHUNK_BYTES = 256 * 1024
CONCURRENCY_LEVELS = (50, 200)
VERSION_CHECK_CONCURRENCY = 50
DEVICES = 10_000
DOWNLOAD_TOKENS = 256  # distinct devices used by the download clients


# --------------------------------------------------------------------------- the load generator


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """(status, body bytes) of one response; the body is read and discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    remaining = length
    while remaining:
        chunk = await reader.read(min(READ_CHUNK_BYTES, remaining))
        if not chunk:
            raise ConnectionError("body ended early")
        remaining -= len(chunk)
    return status, length


async def _client(host, port, requests, deadline, stats, latencies) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=READ_CHUNK_BYTES * 4)
    try:
        while time.monotonic() < deadline:
            request = random.choice(requests)
            started = time.perf_counter()
            writer.write(request)
            status, length = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            stats["bytes"] += length
            stats["responses"] += 1
            stats.setdefault(f"status_{status}", 0)
            stats[f"status_{status}"] += 1
    finally:
        writer.close()


async def _load(host, port, requests, concurrency, duration_s) -> dict:
    stats = {"bytes": 0, "responses": 0}
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + duration_s
    results = await asyncio.gather(
        *[_client(host, port, requests, deadline, stats, latencies) for _ in range(concurrency)],
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    latencies.sort()

    def percentile(p: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)
            if latencies
            else None
        )

    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "responses": stats["responses"],
        "statuses": {k: v for k, v in stats.items() if k.startswith("status_")},
        "requests_per_s": round(stats["responses"] / elapsed, 1),
        "mbytes_per_s": round(stats["bytes"] / elapsed / 1e6, 1),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
        "client_errors": errors[:5],
    }


def _load_in_process(args, queue) -> None:
    queue.put(asyncio.run(_load(*args)))


def run_load(host: str, port: int, requests: list[bytes], concurrency: int, duration_s: float) -> dict:
    """Runs the load generator in its own process (so it does not share the GIL with anything here)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_load_in_process, args=((host, port, requests, concurrency, duration_s), queue)
    )
    process.start()
    result = queue.get(timeout=duration_s + 120)
    process.join(timeout=30)
    return result


def get_request(host: str, port: int, path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Connection: keep-alive\r\n\r\n".encode()


# --------------------------------------------------------------------------- setup


def make_release(tmp: Path) -> tuple[Path, bytes, bytes, str]:
    key = keys.generate_key(tmp / "release.pem")
    image = imagegen.build_app_image(imagegen.ImageSpec(version="9.0.0", target_size_bytes=IMAGE_SIZE_BYTES))
    private = keys.load_private_key(key)
    manifest = manifest_for_image(image, sequence=1, key_id=keys.key_id_for(private.public_key()))
    return keys.public_key_path_for(key), image, sign_manifest(manifest, private), manifest.sha256


def register_devices(database_url: str, count: int) -> list[tuple[str, str]]:
    engine = make_engine(database_url, pool_size=1)
    factory = session_factory(engine)
    devices = []
    try:
        for start in range(0, count, 1000):
            with session_scope(factory) as session:
                for index in range(start, min(count, start + 1000)):
                    device_id = f"bench{index:05d}"
                    devices.append(
                        (device_id, register_device(session, device_id, tags=["bench"], actor="benchmark"))
                    )
    finally:
        engine.dispose()
    return devices


def measure_version_checks(controller, devices: list[tuple[str, str]], duration_s: float) -> dict:
    """Version checks with a random device's token each; half the fleet is offered the release (200), half runs it (204)."""
    port = int(controller.device_url.rsplit(":", 1)[1])
    requests = []
    for index, (device_id, token) in enumerate(devices):
        running = "9.0.0" if index % 2 else "8.0.0"
        query = (
            f"/api/ota/version?device_id={device_id}&version={running}&secure_version=0&slot=0&state=valid"
        )
        requests.append(get_request("127.0.0.1", port, query, token))
    result = run_load("127.0.0.1", port, requests, VERSION_CHECK_CONCURRENCY, duration_s)
    result["devices"] = len(devices)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--skip-postgres", action="store_true", help="version checks on SQLite only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.devices <= 100_000:
        parser.error("--duration must be 1..120 s and --devices 1..100000")

    results: dict = {
        "benchmark": "serve",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "image_bytes": None,
        "duration_s": args.duration,
        "downloads": {},
        "version_checks": {},
    }
    with tempfile.TemporaryDirectory(prefix="csi-ota-bench-") as tmp_name:
        tmp = Path(tmp_name)
        public_key, image, manifest, sha256 = make_release(tmp)
        results["image_bytes"] = len(image)
        with controller_server(
            tmp / "data", trusted_keys=[public_key], extra_args=["--device-rate", "0", "--log-level", "error"]
        ) as controller:
            with controller.management_client() as mgmt:
                response = mgmt.post(
                    "/api/releases",
                    content=image,
                    headers={"X-Release-Manifest": base64.b64encode(manifest).decode()},
                )
                response.raise_for_status()
            print(f"registering {args.devices} devices …", flush=True)
            devices = register_devices(controller.database_url, args.devices)
            with controller.management_client() as mgmt:
                # Half the fleet is offered the release (200 + manifest), half already runs it (204).
                response = mgmt.post(
                    "/api/batch",
                    json={"selection": {"tag": "bench"}, "action": "assign", "release": "9.0.0"},
                    timeout=300,
                )
                response.raise_for_status()

            offload_args = ["--device-rate", "0", "--log-level", "error", "--x-accel-redirect", "/_firmware/"]
            with controller_server(
                tmp / "data", admin_token=controller.admin_token, extra_args=offload_args
            ) as offloaded:
                offload_port = int(offloaded.device_url.rsplit(":", 1)[1])
                front_config = f"""
                    location /_firmware/ {{ internal; alias {controller.firmware_dir}/; }}
                    location / {{ proxy_pass http://csi_ota_controller; proxy_http_version 1.1;
                                  proxy_set_header Connection ""; }}
                """
                upstream = f"upstream csi_ota_controller {{ server 127.0.0.1:{offload_port}; keepalive 64; }}"
                with (
                    nginx_server(controller.firmware_dir, worker_processes=2) as plain,
                    nginx_server(
                        controller.firmware_dir,
                        worker_processes=2,
                        extra_server_config=front_config,
                        extra_http_config=upstream,
                    ) as front,
                ):
                    host = "127.0.0.1"
                    controller_port = int(controller.device_url.rsplit(":", 1)[1])
                    tokens = [token for _, token in devices[:DOWNLOAD_TOKENS]]
                    path = f"/api/ota/firmware/{sha256}"
                    targets = {
                        "controller": (
                            controller_port,
                            [get_request(host, controller_port, path, t) for t in tokens],
                        ),
                        "nginx": (plain.port, [get_request(host, plain.port, f"/{sha256}.bin")]),
                        "nginx_x_accel_redirect": (
                            front.port,
                            [get_request(host, front.port, path, t) for t in tokens],
                        ),
                    }
                    for concurrency in CONCURRENCY_LEVELS:
                        row = {}
                        for name, (port, requests) in targets.items():
                            print(f"downloads: {name}, {concurrency} clients …", flush=True)
                            row[name] = run_load(host, port, requests, concurrency, args.duration)
                        nginx_rate = row["nginx"]["mbytes_per_s"] or 1
                        row["ratio_controller_to_nginx"] = round(
                            row["controller"]["mbytes_per_s"] / nginx_rate, 3
                        )
                        row["ratio_x_accel_to_nginx"] = round(
                            row["nginx_x_accel_redirect"]["mbytes_per_s"] / nginx_rate, 3
                        )
                        results["downloads"][str(concurrency)] = row

            print(
                f"version checks: {args.devices} devices, {VERSION_CHECK_CONCURRENCY} clients …", flush=True
            )
            results["version_checks"]["sqlite"] = measure_version_checks(controller, devices, args.duration)

        if not args.skip_postgres:
            print(f"version checks on PostgreSQL: {args.devices} devices …", flush=True)
            with postgres_server(fsync=True) as pg:
                url = pg.create_database("csi_ota_bench")
                with controller_server(
                    tmp / "data-pg",
                    database_url=url,
                    trusted_keys=[public_key],
                    extra_args=["--device-rate", "0", "--log-level", "error"],
                ) as controller:
                    with controller.management_client() as mgmt:
                        mgmt.post(
                            "/api/releases",
                            content=image,
                            headers={"X-Release-Manifest": base64.b64encode(manifest).decode()},
                        ).raise_for_status()
                    devices = register_devices(controller.database_url, args.devices)
                    with controller.management_client() as mgmt:
                        mgmt.post(
                            "/api/batch",
                            json={"selection": {"tag": "bench"}, "action": "assign", "release": "9.0.0"},
                            timeout=300,
                        ).raise_for_status()
                    results["version_checks"]["postgres"] = measure_version_checks(
                        controller, devices, args.duration
                    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    for concurrency, row in results["downloads"].items():
        print(
            f"{concurrency:>4} clients: controller {row['controller']['mbytes_per_s']} MB/s, "
            f"nginx {row['nginx']['mbytes_per_s']} MB/s, nginx+X-Accel-Redirect {row['nginx_x_accel_redirect']['mbytes_per_s']} MB/s "
            f"(controller/nginx {row['ratio_controller_to_nginx']}, x-accel/nginx {row['ratio_x_accel_to_nginx']})"
        )
    for backend, vc in results["version_checks"].items():
        print(
            f"version checks ({backend}): {vc['requests_per_s']} /s, p50 {vc['p50_ms']} ms, p99 {vc['p99_ms']} ms "
            f"({vc['devices']} devices, {VERSION_CHECK_CONCURRENCY} clients)"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
