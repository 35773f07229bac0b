"""The virtual ESP32-S3 (the real firmware) updates through nginx with signed download links.

`csi-ota serve --signed-download-links` behind Debian's nginx configured by
`csi-ota download-links nginx-config`'s library function: the device checks through nginx,
receives a signed X-Firmware-Url, and nginx — not the controller — sends it the image.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import httpx
import pytest

from csi_ota import keys
from csi_ota.controller import download_links
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim
from services import controller_server, free_port, nginx_server
from sim_support import ReleaseSigner, app_image, write_flash

pytestmark = [pytest.mark.sim]

IMAGE_BYTES = 150_000
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
V2_BOOT = r"app: running partition ota_1, version 2\.0\.0"
LINK_DOWNLOAD = (
    r"downloading http://127\.0\.0\.1:\d+/api/ota/firmware/[0-9a-f]{64}"
    r"\?device=csi_sensor_ngx&expires=\d+&sig=[A-Za-z0-9_-]{22} "
)


@pytest.fixture(scope="module")
def sim_binary() -> Path:
    return build_sim()


def status_of(sim: SimProcess) -> dict[str, object]:
    sim.send("ota status")
    return json.loads(sim.expect(r"^\{.*\}$").group(0))


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@contextlib.contextmanager
def _offloaded_controller(tmp_path: Path):
    """A controller with signed links and release 2.0.0 assigned to csi_sensor_ngx: (ctl, secret, signer, token)."""
    key_path = keys.generate_key(tmp_path / "release.pem")
    signer = ReleaseSigner(keys.load_private_key(key_path))
    secret_file = tmp_path / "link.secret"
    download_links.new_secret(secret_file)
    args = ["--workers", "1", "--signed-download-links", str(secret_file)]
    with (
        controller_server(
            tmp_path / "controller", trusted_keys=[keys.public_key_path_for(key_path)], extra_args=args
        ) as ctl,
        ctl.management_client() as mgmt,
    ):
        token = mgmt.post("/api/devices", json={"device_id": "csi_sensor_ngx"}).json()["token"]
        release = signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES))
        upload = mgmt.post(
            "/api/releases",
            content=release.image,
            headers={"X-Release-Manifest": base64.b64encode(release.manifest).decode()},
        )
        assert upload.status_code == 201, upload.text
        assert (
            mgmt.put("/api/devices/csi_sensor_ngx/assignment", json={"release": "2.0.0"}).status_code == 200
        )
        yield ctl, download_links.load_secret(secret_file), signer, token


@contextlib.contextmanager
def _nginx_in_front(tmp_path: Path, ctl, secret: str, port: int | None = None):
    http_config, server_config = download_links.nginx_config(
        secret, ctl.firmware_dir, ctl.device_url.removeprefix("http://")
    )
    (tmp_path / "root").mkdir(exist_ok=True)
    with nginx_server(
        tmp_path / "root", extra_http_config=http_config, extra_server_config=server_config, port=port
    ) as nginx:
        yield nginx


def _device_config(tmp_path: Path, signer, token: str, port: int) -> Path:
    return SimConfig(
        device_id="csi_sensor_ngx",
        version_check_url=f"http://127.0.0.1:{port}/api/ota/version",
        trusted_keys=signer.trusted_keys,
        auth_token=token,
    ).write(tmp_path / "device.conf")


def test_update_through_nginx_with_a_signed_link(tmp_path: Path, sim_binary: Path) -> None:
    with _offloaded_controller(tmp_path) as (ctl, secret, signer, token):
        with _nginx_in_front(tmp_path, ctl, secret) as nginx:
            flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
            config = _device_config(tmp_path, signer, token, nginx.port)
            with SimProcess(flash, config, binary=sim_binary).start() as sim:
                sim.expect(V1_BOOT)
                sim.send("ota check")
                sim.expect(LINK_DOWNLOAD)
                sim.expect(V2_BOOT)
                sim.expect(r"ota: report \d+ success \(ok\) acknowledged")
                assert sim.stop() == 0
        metrics = httpx.get(f"{ctl.management_url}/metrics").text
        with ctl.management_client() as mgmt:
            device = mgmt.get("/api/devices/csi_sensor_ngx").json()
    assert device["version"] == "2.0.0"
    # nginx sent every byte: the controller started no download and served nothing.
    assert _metric(metrics, "csi_ota_firmware_bytes_served_total") == 0
    assert _metric(metrics, 'csi_ota_firmware_downloads_total{status="started"}') == 0


def test_a_refused_link_fails_once_and_the_next_check_updates(tmp_path: Path, sim_binary: Path) -> None:
    """nginx holding another secret (a rotation half done) answers 403: the device reports `failed`
    (http_auth) and keeps v1; the next check's fresh link, once nginx agrees, installs v2."""
    with _offloaded_controller(tmp_path) as (ctl, secret, signer, token):
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        port = free_port()
        config = _device_config(tmp_path, signer, token, port)
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            with _nginx_in_front(tmp_path, ctl, "r" * 43, port=port):
                sim.send("ota check")
                sim.expect(LINK_DOWNLOAD)
                sim.expect(r"ota: update failed: http_auth")
                sim.expect(r"ota: report \d+ failed \(http_auth\) acknowledged")
            with ctl.management_client() as mgmt:
                reports = mgmt.get("/api/devices/csi_sensor_ngx/reports").json()
            assert status_of(sim)["version"] == "1.0.0"
            with _nginx_in_front(tmp_path, ctl, secret, port=port):
                sim.send("ota check")
                sim.expect(LINK_DOWNLOAD)
                sim.expect(V2_BOOT)
                sim.expect(r"ota: report \d+ success \(ok\) acknowledged")
            assert sim.stop() == 0
    assert any(r["state"] == "failed" and r["reason"] == "http_auth" for r in reports)
