"""Benchmark of `csi-ota serve` against Debian's nginx on loopback (not a test; writes JSON).

Measures, in one run, every row beside its nginx reference from the same minute:

  1. firmware downloads (aggregate MB/s of full 1.2 MB images) at 50 and 200 concurrent
     keep-alive clients, plain HTTP and TLS: the controller sending the image itself
     (sendfile on plain HTTP), nginx serving the same file, nginx in front of the
     controller with X-Accel-Redirect (the controller authorises, nginx sends), and nginx
     serving signed download links, plain and TLS (serve --signed-download-links: nginx checks the link
     itself, no request reaches the controller);
  2. version checks (`GET /api/ota/version`, each with a random device's token): closed
     loop with 50 clients at 10,000 devices (SQLite) and at 100,000 and 1,000,000
     registered devices (PostgreSQL), beside nginx answering a static manifest; and open
     loop at the rate a fleet of that size polling every 5 minutes produces (3,333/s for
     a million), with p50/p99 latency counted from when each request was due.

The load generator (benchmarks/benchlib.py) runs in its own process and shares the two
cores with the servers, so absolute numbers are low and noisy; the ratios against nginx
measured in the same run are the figures to read. Usage:

    python benchmarks/serve.py [--duration 8] [--max-devices 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import (  # noqa: E402
    bulk_register,
    closed_loop,
    device_id_for,
    get_request,
    machine,
    open_loop,
    running_version_for,
    token_for,
    tree_cpu_s,
)
from csi_ota import certs, imagegen, keys  # noqa: E402
from csi_ota.controller import download_links  # noqa: E402
from csi_ota.controller.db import default_sqlite_url  # noqa: E402
from csi_ota.manifest import manifest_for_image, sign_manifest  # noqa: E402
from services import controller_server, free_port, nginx_server, postgres_server  # noqa: E402

IMAGE_SIZE_BYTES = 1_200_000
CONCURRENCY_LEVELS = (50, 200)
VERSION_CHECK_CONCURRENCY = 50
SQLITE_DEVICES = 10_000
POSTGRES_FLEETS = (100_000, 1_000_000)
POLL_INTERVAL_S = 300.0
DOWNLOAD_TOKENS = 256  # distinct devices used by the download clients
HOST = "127.0.0.1"


def make_release(tmp: Path) -> tuple[Path, bytes, bytes, str]:
    key = keys.generate_key(tmp / "release.pem")
    image = imagegen.build_app_image(imagegen.ImageSpec(version="9.0.0", target_size_bytes=IMAGE_SIZE_BYTES))
    private = keys.load_private_key(key)
    manifest = manifest_for_image(image, sequence=1, key_id=keys.key_id_for(private.public_key()))
    return keys.public_key_path_for(key), image, sign_manifest(manifest, private), manifest.sha256


def publish(controller, image: bytes, manifest: bytes) -> int:
    """Uploads the release; returns its id (devices are registered with it assigned: half of them then
    run it and get 204, half do not and get 200 + the manifest)."""
    with controller.management_client() as mgmt:
        response = mgmt.post(
            "/api/releases",
            content=image,
            headers={"X-Release-Manifest": base64.b64encode(manifest).decode()},
        )
        response.raise_for_status()
        return response.json()["id"]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class VersionCheckRequests:
    """The i-th request: a random device of the fleet (a picklable callable for the load process)."""

    def __init__(self, port: int, devices: int) -> None:
        self.port, self.devices = port, devices

    def __call__(self, _i: int) -> bytes:
        index = random.randrange(self.devices)
        running = running_version_for(index)
        query = f"/api/ota/version?device_id={device_id_for(index)}&version={running}&secure_version=0&slot=0&state=valid"
        return get_request(HOST, self.port, query, token_for(index))


def version_check_requests(port: int, devices: int, count: int = 20_000) -> list[bytes]:
    make = VersionCheckRequests(port, devices)
    return [make(i) for i in range(min(count, devices * 2))]


def measure_downloads(args, tmp, controller, public_key, sha256, results) -> None:
    tls_dir = tmp / "tls"
    certs.create_ca(tls_dir)
    certs.create_server_cert(tls_dir, tls_dir)
    cert, key = tls_dir / "server.crt", tls_dir / "server.key"
    common = ["--device-rate", "0", "--log-level", "error", "--workers", str(args.workers)]
    tokens = [token_for(i) for i in range(DOWNLOAD_TOKENS)]
    path = f"/api/ota/firmware/{sha256}"
    with (
        controller_server(
            tmp / "data",
            admin_token=controller.admin_token,
            extra_args=common + ["--x-accel-redirect", "/_firmware/"],
        ) as offloaded,
        controller_server(
            tmp / "data", admin_token=controller.admin_token, tls_cert=cert, tls_key=key, extra_args=common
        ) as controller_tls,
    ):
        tls_port = free_port()
        front_config = f"""
            location /_firmware/ {{ internal; alias {controller.firmware_dir}/; }}
            location / {{ proxy_pass http://csi_ota_controller; proxy_http_version 1.1;
                          proxy_set_header Connection ""; }}
        """
        upstream = (
            f"upstream csi_ota_controller {{ server 127.0.0.1:{_port(offloaded.device_url)}; keepalive 64; }}"
        )
        tls_server = f"""
            server {{ listen {HOST}:{tls_port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
                      ssl_protocols TLSv1.2 TLSv1.3; root {controller.firmware_dir}; }}
        """
        secret_file = tmp / "link.secret"
        download_links.new_secret(secret_file)
        secret = download_links.load_secret(secret_file)
        links_http, links_server = download_links.nginx_config(
            secret, controller.firmware_dir, f"127.0.0.1:{_port(controller.device_url)}"
        )
        signed = [
            download_links.signed_url(sha256, device_id_for(i), secret, 3600) for i in range(DOWNLOAD_TOKENS)
        ]
        (tmp / "links-root").mkdir(exist_ok=True)
        tls_links_port = free_port()
        tls_links = f"""
            server {{ listen {HOST}:{tls_links_port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
                      ssl_protocols TLSv1.2 TLSv1.3; root {tmp / "links-root"};
                      {links_server} }}
        """
        with (
            nginx_server(
                controller.firmware_dir,
                worker_processes=2,
                extra_http_config=tls_server + links_http + tls_links,
            ) as plain,
            nginx_server(
                controller.firmware_dir,
                worker_processes=2,
                extra_server_config=front_config,
                extra_http_config=upstream,
            ) as front,
            nginx_server(
                tmp / "links-root",
                worker_processes=2,
                extra_server_config=links_server,
                extra_http_config=links_http,
            ) as links_front,
        ):
            port = _port(controller.device_url)
            plain_targets = {
                "controller": (port, [get_request(HOST, port, path, t) for t in tokens], False),
                "nginx": (plain.port, [get_request(HOST, plain.port, f"/{sha256}.bin")], False),
                "nginx_x_accel_redirect": (
                    front.port,
                    [get_request(HOST, front.port, path, t) for t in tokens],
                    False,
                ),
                "nginx_signed_link": (
                    links_front.port,
                    [
                        get_request(HOST, links_front.port, link, t)
                        for link, t in zip(signed, tokens, strict=True)
                    ],
                    False,
                ),
            }
            tport = _port(controller_tls.device_url)
            tls_targets = {
                "controller": (tport, [get_request(HOST, tport, path, t) for t in tokens], True),
                "nginx": (tls_port, [get_request(HOST, tls_port, f"/{sha256}.bin")], True),
                "nginx_signed_link": (
                    tls_links_port,
                    [
                        get_request(HOST, tls_links_port, link, t)
                        for link, t in zip(signed, tokens, strict=True)
                    ],
                    True,
                ),
            }
            server_pids = {
                ("plain", "controller"): [controller.process.pid],
                ("plain", "nginx"): [plain.process.pid],
                ("plain", "nginx_x_accel_redirect"): [front.process.pid, offloaded.process.pid],
                ("plain", "nginx_signed_link"): [links_front.process.pid],
                ("tls", "controller"): [controller_tls.process.pid],
                ("tls", "nginx"): [plain.process.pid],
                ("tls", "nginx_signed_link"): [plain.process.pid],
            }
            for transport, targets in (("plain", plain_targets), ("tls", tls_targets)):
                for concurrency in CONCURRENCY_LEVELS:
                    rounds = []
                    for round_index in range(args.repeat):  # interleaved: each round measures every target
                        measured = {}
                        for name, (target_port, requests, tls) in targets.items():
                            print(
                                f"downloads ({transport}): {name}, {concurrency} clients, "
                                f"round {round_index + 1}/{args.repeat} …",
                                flush=True,
                            )
                            pids = server_pids[transport, name]
                            cpu0 = tree_cpu_s(pids)
                            # Signed links: the controller behind nginx should see none of it; its CPU
                            # during the row (its background work included) is kept beside nginx's.
                            upstream_cpu0 = tree_cpu_s([controller.process.pid])
                            measured[name] = closed_loop(
                                HOST, target_port, requests, concurrency, args.duration, tls=tls
                            )
                            _add_server_cpu(measured[name], tree_cpu_s(pids) - cpu0)
                            if name == "nginx_signed_link":
                                measured[name]["controller_cpu_s"] = round(
                                    tree_cpu_s([controller.process.pid]) - upstream_cpu0, 3
                                )
                        rounds.append(measured)
                    results["downloads"][transport][str(concurrency)] = _median_row(rounds)


def _median_row(rounds: list[dict]) -> dict:
    """Each target's round with the median MB/s, the ratios of those medians, every round kept."""
    row: dict = {}
    for name in rounds[0]:
        ordered = sorted((r[name] for r in rounds), key=lambda m: m["mbytes_per_s"])
        row[name] = ordered[len(ordered) // 2]
    reference = row["nginx"]["mbytes_per_s"] or 1
    row["ratio_controller_to_nginx"] = round(row["controller"]["mbytes_per_s"] / reference, 3)
    if "nginx_x_accel_redirect" in row:
        row["ratio_x_accel_to_nginx"] = round(row["nginx_x_accel_redirect"]["mbytes_per_s"] / reference, 3)
    if "nginx_signed_link" in row:
        row["ratio_signed_link_to_nginx"] = round(row["nginx_signed_link"]["mbytes_per_s"] / reference, 3)
    if len(rounds) > 1:
        row["rounds"] = rounds
        for name, key in (
            ("controller", "ratio_controller_to_nginx_per_round"),
            ("nginx_x_accel_redirect", "ratio_x_accel_to_nginx_per_round"),
            ("nginx_signed_link", "ratio_signed_link_to_nginx_per_round"),
        ):
            if name in rounds[0]:
                row[key] = [
                    round(r[name]["mbytes_per_s"] / (r["nginx"]["mbytes_per_s"] or 1), 3) for r in rounds
                ]
    return row


def _add_server_cpu(row: dict, cpu_s: float) -> None:
    """The servers' CPU during a row (seconds, ms per MB) beside the load generator's."""
    row["server_cpu_s"] = round(cpu_s, 2)
    megabytes = row["mbytes_per_s"] * row["seconds"]
    row["server_cpu_ms_per_mb"] = round(cpu_s * 1000 / megabytes, 3) if megabytes else None
    row["load_generator_cpu_ms_per_mb"] = (
        round(row["load_generator_cpu_s"] * 1000 / megabytes, 3) if megabytes else None
    )


def measure_version_checks(args, controller, devices: int, static, manifest_name: str) -> dict:
    """Closed loop (50 clients) beside nginx's static manifest, then open loop at the fleet's polling rate."""
    port = _port(controller.device_url)
    nginx_port = static.port
    row = {"devices": devices}
    print(f"version checks: {devices} devices, closed loop …", flush=True)
    cpu0 = tree_cpu_s([controller.process.pid])
    row["closed"] = closed_loop(
        HOST, port, version_check_requests(port, devices), VERSION_CHECK_CONCURRENCY, args.duration
    )
    _add_cpu_per_request(row["closed"], tree_cpu_s([controller.process.pid]) - cpu0)
    cpu0 = tree_cpu_s([static.process.pid])
    row["nginx_static_manifest"] = closed_loop(
        HOST,
        nginx_port,
        [get_request(HOST, nginx_port, f"/{manifest_name}")],
        VERSION_CHECK_CONCURRENCY,
        args.duration,
    )
    _add_cpu_per_request(row["nginx_static_manifest"], tree_cpu_s([static.process.pid]) - cpu0)
    row["ratio_closed_to_nginx"] = round(
        row["closed"]["requests_per_s"] / (row["nginx_static_manifest"]["requests_per_s"] or 1), 3
    )
    rate = devices / POLL_INTERVAL_S
    print(f"version checks: {devices} devices, open loop at {rate:.0f}/s …", flush=True)
    cpu0 = tree_cpu_s([controller.process.pid])
    row["open"] = open_loop(HOST, port, VersionCheckRequests(port, devices), rate, args.duration)
    row["open"]["server_cpu_share"] = round(
        (tree_cpu_s([controller.process.pid]) - cpu0) / (args.duration + 2.0), 2
    )  # of one core, over warm-up + measurement
    return row


def _add_cpu_per_request(row: dict, cpu_s: float) -> None:
    row["server_cpu_s"] = round(cpu_s, 2)
    row["server_cpu_ms_per_request"] = round(cpu_s * 1000 / row["responses"], 3) if row["responses"] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument(
        "--max-devices", type=int, default=POSTGRES_FLEETS[-1], help="largest PostgreSQL fleet"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="csi-ota serve --workers")
    parser.add_argument(
        "--repeat", type=int, default=1, help="download rounds (interleaved); each row keeps the median"
    )
    parser.add_argument("--skip-downloads", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true", help="version checks on SQLite only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.max_devices <= 1_000_000 or not 1 <= args.repeat <= 9:
        parser.error("--duration must be 1..120 s, --max-devices 1..1000000 and --repeat 1..9")

    results: dict = {
        "benchmark": "serve",
        "machine": machine(),
        "workers": args.workers,
        "image_bytes": IMAGE_SIZE_BYTES,
        "duration_s": args.duration,
        "download_rounds": args.repeat,
        "downloads": {"plain": {}, "tls": {}},
        "version_checks": {},
    }
    common = ["--device-rate", "0", "--log-level", "error", "--workers", str(args.workers)]
    with tempfile.TemporaryDirectory(prefix="csi-ota-bench-") as tmp_name:
        tmp = Path(tmp_name)
        public_key, image, manifest, sha256 = make_release(tmp)
        (tmp / "static").mkdir()
        (tmp / "static" / "manifest.txt").write_bytes(manifest)
        with nginx_server(tmp / "static", worker_processes=2) as static:
            # SQLite: downloads and the 10,000-device version checks.
            data = tmp / "data"
            data.mkdir()
            with controller_server(data, trusted_keys=[public_key], extra_args=common) as controller:
                release_id = publish(controller, image, manifest)
                admin = controller.admin_token
            print(f"registering {SQLITE_DEVICES} devices (SQLite) …", flush=True)
            bulk_register(default_sqlite_url(data), 0, SQLITE_DEVICES, ("bench",), release_id)
            with controller_server(data, admin_token=admin, extra_args=common) as controller:
                if not args.skip_downloads:
                    measure_downloads(args, tmp, controller, public_key, sha256, results)
                results["version_checks"]["sqlite_10000"] = measure_version_checks(
                    args, controller, SQLITE_DEVICES, static, "manifest.txt"
                )
            if not args.skip_postgres:
                with postgres_server(fsync=True) as pg:
                    url = pg.create_database("csi_ota_bench")
                    with controller_server(
                        tmp / "data-pg", database_url=url, trusted_keys=[public_key], extra_args=common
                    ) as controller:
                        admin = controller.admin_token
                        release_id = publish(controller, image, manifest)
                    registered = 0
                    for fleet in [f for f in POSTGRES_FLEETS if f <= args.max_devices] or [args.max_devices]:
                        print(f"registering {fleet - registered} devices (PostgreSQL) …", flush=True)
                        seconds = bulk_register(url, registered, fleet - registered, ("bench",), release_id)
                        print(f"  {seconds:.0f} s", flush=True)
                        registered = fleet
                        with controller_server(
                            tmp / "data-pg",
                            database_url=url,
                            admin_token=admin,
                            extra_args=common,
                            timeout_s=600,
                        ) as controller:
                            results["version_checks"][f"postgres_{fleet}"] = measure_version_checks(
                                args, controller, fleet, static, "manifest.txt"
                            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    for transport, rows in results["downloads"].items():
        for concurrency, row in rows.items():
            offload = row.get("nginx_x_accel_redirect")
            signed_link = row.get("nginx_signed_link")
            print(
                f"downloads {transport:5} {concurrency:>4} clients: controller {row['controller']['mbytes_per_s']} MB/s, "
                f"nginx {row['nginx']['mbytes_per_s']} MB/s (ratio {row['ratio_controller_to_nginx']})"
                + (
                    f", X-Accel-Redirect {offload['mbytes_per_s']} MB/s (ratio {row['ratio_x_accel_to_nginx']})"
                    if offload
                    else ""
                )
                + (
                    f", signed links {signed_link['mbytes_per_s']} MB/s (ratio {row['ratio_signed_link_to_nginx']})"
                    if signed_link
                    else ""
                )
            )
    for name, row in results["version_checks"].items():
        closed, ref, opened = row["closed"], row["nginx_static_manifest"], row["open"]
        print(
            f"version checks {name}: closed {closed['requests_per_s']}/s p99 {closed['p99_ms']} ms "
            f"(nginx {ref['requests_per_s']}/s, ratio {row['ratio_closed_to_nginx']}); open loop "
            f"{opened['achieved_per_s']}/{opened['target_per_s']}/s p50 {opened['p50_ms']} ms p99 {opened['p99_ms']} ms, "
            f"{opened['errors']} errors"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
