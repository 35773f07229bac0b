"""Scenarios 1 and 5 against the real controller (`csi-ota serve` on loopback, tests/services.py).

The other scenarios use the small test server because they need a server that misbehaves on
purpose; here the virtual ESP32-S3 talks to the controller itself: the release is uploaded
and assigned through the management API, and the outcome is read back from the controller's
registry (`GET /api/devices/<id>`, `GET /api/devices/<id>/reports`).
"""

from __future__ import annotations

import base64
import importlib.util
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from csi_ota.keys import public_key_path_for
from csi_ota_hw.device import DeviceSession
from csi_ota_hw.releases import ReleaseKit, version_of
from csi_ota_hw.sim_env import SimEnvironment, write_sim_config

REPO = Path(__file__).resolve().parents[1]
DEVICE_ID = "tests-hw-ctl"
RECORD_TIMEOUT_S = 20.0


def _services_module():
    """tests/services.py (the host suite's service starters), imported by path."""
    spec = importlib.util.spec_from_file_location("csi_ota_test_services", REPO / "tests" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class ControllerEndpoint:
    """What write_sim_config needs from a server: where the device checks and downloads."""

    base_url: str

    @property
    def version_url(self) -> str:
        return f"{self.base_url}/api/ota/version"


@dataclass
class Controller:
    server: object  # tests/services.ControllerServer
    token: str

    def upload(self, image: bytes, manifest: bytes) -> None:
        with self.server.management_client() as client:
            response = client.post(
                "/api/releases",
                content=image,
                headers={
                    "Content-Type": "application/octet-stream",
                    "X-Release-Manifest": base64.b64encode(manifest).decode(),
                },
            )
        assert response.status_code == 201, response.text

    def assign(self, version: str) -> None:
        with self.server.management_client() as client:
            response = client.put(f"/api/devices/{DEVICE_ID}/assignment", json={"release": version})
        assert response.status_code == 200, response.text

    def device(self) -> dict:
        with self.server.management_client() as client:
            return client.get(f"/api/devices/{DEVICE_ID}").raise_for_status().json()

    def reports(self) -> list[dict]:
        with self.server.management_client() as client:
            return client.get(f"/api/devices/{DEVICE_ID}/reports").raise_for_status().json()

    def wait_for_report(self, state: str, version: str) -> dict:
        deadline = time.monotonic() + RECORD_TIMEOUT_S
        while time.monotonic() < deadline:
            for report in self.reports():
                if report["state"] == state and report["target_version"] == version:
                    return report
            time.sleep(0.2)
        raise AssertionError(f"the controller has no {state} report for {version}: {self.reports()}")


@pytest.fixture
def controller(ota_target: str, release_kit: ReleaseKit, tmp_path: Path) -> Iterator[Controller]:
    if ota_target != "sim":
        pytest.skip("the controller runs on loopback: simulator only")
    services = _services_module()
    public_key = public_key_path_for(release_kit.key_path)
    with services.controller_server(tmp_path / "controller", trusted_keys=[public_key]) as server:
        with server.management_client() as client:
            response = client.post("/api/devices", json={"device_id": DEVICE_ID, "tags": ["tests_hw"]})
        assert response.status_code == 201, response.text
        yield Controller(server=server, token=response.json()["token"])


@pytest.fixture
def sim_env(sim_binary: Path, release_kit: ReleaseKit, controller: Controller, tmp_path: Path):
    """This module's virtual device talks to the controller, not to the test server."""
    return SimEnvironment.create(
        tmp_path / "device",
        binary=sim_binary,
        v1_image=release_kit.image("v1"),
        config=write_sim_config(
            tmp_path / "device" / "sim.conf",
            server=ControllerEndpoint(controller.server.device_url),
            device_id=DEVICE_ID,
            token=controller.token,
            key_id=release_kit.key_id,
            public_key_raw=release_kit.public_key_raw,
        ),
    )


@pytest.mark.sim
def test_s1_controller_v1_to_v2_recorded(dut, release_kit: ReleaseKit, controller: Controller) -> None:
    session = DeviceSession(dut=dut, device=None, server=None, kit=release_kit, target="sim")
    v1 = version_of(release_kit.image("v1"))
    v2_image = release_kit.image("v2")
    v2 = version_of(v2_image)
    assert session.wait_ready(v1)["version"] == v1

    controller.upload(v2_image, release_kit.manifest_for(v2_image))
    controller.assign(v2)
    session.check()
    session.expect("update_available", v1, v2)
    session.expect("boot_set")
    assert session.wait_boot() == v2
    session.expect("selftest_passed", v2)
    session.expect("report_acked")

    report = controller.wait_for_report("success", v2)
    assert (report["version"], report["reason"]) == (v2, "ok")
    states = [r["state"] for r in reversed(controller.reports())]
    assert states[:4] == ["downloading", "downloaded", "pending_verify", "success"]
    session.check()  # the next version check tells the registry what runs now
    session.expect("up_to_date", v2)
    device = controller.device()
    assert (device["version"], device["slot"], device["last_ota_state"]) == (v2, 1, "success")


@pytest.mark.sim
def test_s5_controller_records_selftest_rollback(
    dut, release_kit: ReleaseKit, controller: Controller
) -> None:
    session = DeviceSession(dut=dut, device=None, server=None, kit=release_kit, target="sim")
    v1 = version_of(release_kit.image("v1"))
    image = release_kit.image("v2_fail_selftest")
    v2 = version_of(image)
    assert session.wait_ready(v1)["version"] == v1

    controller.upload(image, release_kit.manifest_for(image))
    controller.assign(v2)
    session.check()
    session.expect("boot_set")
    assert session.wait_boot() == v2
    session.expect("selftest_failed")
    assert session.wait_boot() == v1

    report = controller.wait_for_report("rolled_back", v2)
    assert report["reason"] == "selftest"
    assert not any(r["state"] == "success" for r in controller.reports())
    device = controller.device()
    assert device["last_ota_state"] == "rolled_back" and device["last_ota_reason"] == "selftest"
