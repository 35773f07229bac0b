"""The walk-through that README's first Quick-start command runs (`csi-ota demo`).

Embedded defaults only — SQLite, local files, the virtual ESP32-S3 — and every
step is the real tool a user would run:

1. partition layout (4 MB default) → CSV + binary table
2. two ESP32-S3 app images, v1.0.0 and v2.0.0 (esptool's image classes)
3. the size budget of v2 against the 1.25 MB OTA slot
4. a release key, two signed releases, verified
5. a local CA + the controller's HTTPS certificate, and the device's
   provisioning NVS image
6. the controller (`csi-ota serve`, SQLite) on loopback: releases uploaded,
   the device registered, v2 assigned
7. a virtual ESP32-S3 booting v1 from ota_0 updates itself to v2 over HTTPS,
   reboots, passes its self-test and marks v2 valid; the controller's record
   says so.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from csi_ota import budget, certs, keys, provision, release
from csi_ota.controller import admin as admin_lib
from csi_ota.controller.client import ManagementClient
from csi_ota.controller.db import default_sqlite_url
from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError
from csi_ota.imagegen import ImageSpec, write_app_image
from csi_ota.partitions import load_layout
from csi_ota.sim import flashfile
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim

DEVICE_ID = "csi_sensor_001"
LOOPBACK = "127.0.0.1"
CONTROLLER_START_TIMEOUT_S = 60.0
UPDATE_TIMEOUT_S = 120.0
DEMO_IMAGE_BYTES = 420_000  # a realistic CSI app is ~0.8-1 MB; smaller keeps the demo quick


@dataclass
class DemoResult:
    out_dir: Path
    steps: list[tuple[str, str]] = field(default_factory=list)
    device: dict | None = None
    reports: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "logs": {
                name: str(self.out_dir / f"{name}.log")
                for name in ("device", "controller")
                if (self.out_dir / f"{name}.log").exists()
            },
            "steps": [{"step": name, "result": text} for name, text in self.steps],
            "device": self.device,
            "reports": self.reports,
        }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + CONTROLLER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CsiOtaError(
                f"csi-ota serve exited with code {process.returncode}; see {log_path}",
                exit_code=EXIT_OPERATION_FAILED,
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=2, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise CsiOtaError(f"controller not healthy at {url}; see {log_path}", exit_code=EXIT_OPERATION_FAILED)


def run_demo(
    out_dir: Path, *, with_device: bool = True, say: Callable[[str, str], None] | None = None
) -> DemoResult:
    """Run the walk-through in ``out_dir`` (wiped first); returns what each step produced."""
    out_dir = Path(out_dir).resolve()
    if out_dir.exists():
        if not (out_dir / ".csi-ota-demo").exists() and any(out_dir.iterdir()):
            raise CsiOtaError(f"{out_dir} exists and is not a csi-ota demo directory; choose another --out")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / ".csi-ota-demo").write_text("created by csi-ota demo\n")
    result = DemoResult(out_dir=out_dir)

    def step(name: str, text: str) -> None:
        result.steps.append((name, text))
        if say is not None:
            say(name, text)

    # 1. partition layout
    layout = load_layout("4MB")
    (out_dir / "partitions.csv").write_text(layout.to_csv())
    table = layout.to_binary()
    (out_dir / "partition-table.bin").write_bytes(table)
    slots = layout.ota_slots()
    step(
        "partitions",
        f"4 MB layout: {', '.join(f'{s.name} {s.size:#x}' for s in slots)}; table {len(table)} bytes",
    )

    # 2. images
    v1_path, v2_path = out_dir / "csi_sensor-v1.bin", out_dir / "csi_sensor-v2.bin"
    write_app_image(ImageSpec(version="1.0.0", target_size_bytes=DEMO_IMAGE_BYTES), v1_path)
    write_app_image(ImageSpec(version="2.0.0", target_size_bytes=DEMO_IMAGE_BYTES + 4096), v2_path)
    step("images", f"{v1_path.name} (1.0.0), {v2_path.name} (2.0.0): ESP32-S3 app images")

    # 3. budget
    report = budget.check_budget(v2_path, partitions=out_dir / "partition-table.bin")
    budget.enforce(report)
    step(
        "budget",
        f"v2 uses {report.counted_bytes:,} of {report.slot_bytes:,} bytes "
        f"({report.used_percent:.1f} %, {report.status})",
    )

    # 4. key + releases
    (out_dir / "keys").mkdir()
    key_path = keys.generate_key(out_dir / "keys" / "release.pem")
    public_key_path = keys.public_key_path_for(key_path)
    releases_dir = out_dir / "releases"
    rel1 = release.create_release(v1_path, key_path, releases_dir, notes="demo v1")
    rel2 = release.create_release(v2_path, key_path, releases_dir, notes="demo v2")
    release.verify_release(rel2.image_path, rel2.manifest_path, [public_key_path])
    step(
        "release",
        f"signed {rel1.manifest_path.name} (seq {rel1.manifest.sequence}), "
        f"{rel2.manifest_path.name} (seq {rel2.manifest.sequence}); verified",
    )

    if not with_device:
        return result

    # 5. certificates + provisioning
    ca_files, server_files, _ = certs.init_certs(out_dir / "certs")
    device_port, management_port = _free_port(), _free_port()
    device_url = f"https://{LOOPBACK}:{device_port}"
    data_dir = out_dir / "ota-data"
    database_url = default_sqlite_url(data_dir)
    data_dir.mkdir(exist_ok=True)
    admin_token = admin_lib.bootstrap_admin(database_url, name="admin", role="admin")

    # 6. controller
    log_path = out_dir / "controller.log"
    argv = [
        sys.executable,
        "-m",
        "csi_ota",
        "serve",
        "--host",
        LOOPBACK,
        "--device-port",
        str(device_port),
        "--management-port",
        str(management_port),
        "--data-dir",
        str(data_dir),
        "--tls-cert",
        str(server_files.cert),
        "--tls-key",
        str(server_files.key),
        "--trusted-key",
        str(public_key_path),
        "--insecure-management-http",  # the demo's management port is on loopback only
    ]
    env = dict(os.environ, DEVICE_REGISTRY_DB=database_url, FIRMWARE_STORAGE_PATH=str(data_dir / "firmware"))
    with open(log_path, "wb") as log:
        controller = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    sim: SimProcess | None = None
    try:
        management_url = f"http://{LOOPBACK}:{management_port}"
        _wait_healthy(management_url, controller, log_path)
        _wait_healthy(device_url, controller, log_path)
        with ManagementClient(management_url, admin_token) as client:
            client.upload_release(rel1.image_path, rel1.manifest_path)
            client.upload_release(rel2.image_path, rel2.manifest_path)
            device_token = client.post("/api/devices", {"device_id": DEVICE_ID, "tags": ["demo"]})["token"]
            step(
                "controller",
                f"csi-ota serve on {device_url} (devices) and {management_url} (management), "
                f"SQLite {data_dir.name}/; 2 releases uploaded; {DEVICE_ID} registered",
            )

            nvs = provision.build_nvs_image(
                provision.ProvisionConfig(
                    device_id=DEVICE_ID,
                    auth_token=device_token,
                    update_url=f"{device_url}/firmware/latest",
                    version_check_url=f"{device_url}/api/ota/version",
                    check_interval_sec=3600,
                    auto_update_enabled=True,
                    ca_cert=ca_files.cert.read_text(),
                    data_url=device_url,  # heartbeats and CSI data: the self-test's heartbeat
                )
            )
            (out_dir / "nvs.bin").write_bytes(nvs)
            step("provision", f"nvs.bin: {len(nvs):,} bytes (OTA config + CA) for {DEVICE_ID}")

            # 7. the virtual ESP32-S3
            build_sim()
            flash_path = flashfile.create_flash_file(
                out_dir / "device-flash.bin", images={0: v1_path.read_bytes()}, nvs=nvs
            )
            # What the firmware has built in (the release key); the rest comes from nvs.bin.
            config_path = SimConfig(
                trusted_keys=keys.trusted_keys_value([keys.load_public_key(public_key_path)])
            ).write(out_dir / "device.conf")
            sim = SimProcess(flash_path, config_path).start()
            sim.expect(r"app: running partition ota_0, version 1\.0\.0", timeout_s=30)
            sim.expect(
                rf"provisioning: device {re.escape(DEVICE_ID)}, check https://", timeout_s=30, from_start=True
            )
            step("device", "virtual ESP32-S3 booted 1.0.0 from ota_0, settings from nvs.bin")
            client.put(f"/api/devices/{DEVICE_ID}/assignment", {"release": "2.0.0"})
            sim.send("ota check")
            sim.expect(r"ota: update available: 1\.0\.0 -> 2\.0\.0", timeout_s=30)
            sim.expect(r"ota: download complete: \d+ bytes sha256 ok", timeout_s=UPDATE_TIMEOUT_S)
            sim.expect(r"app: running partition ota_1, version 2\.0\.0", timeout_s=30)
            sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid", timeout_s=60)
            sim.expect(r"ota: report \d+ success \(ok\) acknowledged", timeout_s=30)
            step("update", "downloaded v2 over HTTPS, rebooted into ota_1, self-test passed, marked valid")
            result.device = client.get(f"/api/devices/{DEVICE_ID}")
            result.reports = client.get(f"/api/devices/{DEVICE_ID}/reports", limit=10)
            running = result.device.get("running_version") or result.device.get("version")
            if running != "2.0.0":
                raise CsiOtaError(
                    f"controller says {DEVICE_ID} runs {running!r}, expected 2.0.0",
                    exit_code=EXIT_OPERATION_FAILED,
                )
            step(
                "controller record",
                f"{DEVICE_ID} runs {running}; last reports: "
                + ", ".join(f"{r['state']}" for r in result.reports[:4]),
            )
    finally:
        if sim is not None:
            sim.stop()
            (out_dir / "device.log").write_text(sim.output())
        controller.terminate()
        try:
            controller.wait(timeout=10)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait(timeout=10)
    return result
