"""H1 — a config push must not cut a device off OTA (issue 12).

Limits hold end to end: the controller refuses (422 with the reason) what the
device cannot hold once URL-encoded into X-Device-Config; the device refuses,
never truncates, an over-long header and reports ``header_too_long``; a pushed
check URL that does not answer is replaced by the last working one after
OTA_CONFIG_TRIAL_MAX_FAILURES failed checks (reported as ``config_reverted``),
and that survives a reboot. Runs the virtual ESP32-S3 (real core and port).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_plus, urlencode

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csi_ota import keys  # noqa: E402
from csi_ota.controller import registry  # noqa: E402
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim  # noqa: E402
from services import controller_server  # noqa: E402
from sim_support import OtaTestServer, ReleaseSigner, app_image, write_flash  # noqa: E402

pytestmark = [pytest.mark.sim]

REPO = Path(__file__).resolve().parents[2]
CORE_INCLUDE = REPO / "firmware" / "components" / "ota_core" / "include"
IMAGE_BYTES = 150_000
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
# The issue's push: a 160-character update_url beside a normal version_check_url.
LONG_UPDATE_URL = "https://ota.example.com/" + "f" * (160 - len("https://ota.example.com/"))


def _c_define(header: str, name: str) -> int:
    text = (CORE_INCLUDE / header).read_text()
    return int(re.search(rf"#define {name} (\d+)", text).group(1))


def _c_field_bytes(header: str, field: str) -> int:
    text = (CORE_INCLUDE / header).read_text()
    return int(re.search(rf"char {field}\[(\d+)\];", text).group(1))


def _url_of_255(slashes: int) -> str:
    head = "https://h/" + "/" * slashes
    return head + "a" * (registry.CONFIG_URL_MAX_CHARS - len(head))


def status(sim: SimProcess) -> dict[str, object]:
    sim.send("ota status")
    return json.loads(sim.expect(r"^\{.*\}$").group(0))


@pytest.fixture(scope="module")
def sim_binary() -> Path:
    return build_sim()


# --------------------------------------------------------------------------- the limits


def test_controller_limits_are_the_devices_buffers() -> None:
    """The controller's numbers come from the C headers, and the worst merge still fits."""
    assert (
        _c_define("ota_port.h", "OTA_PORT_DEVICE_CONFIG_MAX_BYTES") - 1
        == registry.DEVICE_CONFIG_HEADER_MAX_BYTES
    )
    assert _c_field_bytes("ota_agent.h", "update_url") - 1 == registry.CONFIG_URL_MAX_CHARS
    assert _c_field_bytes("ota_agent.h", "version_check_url") - 1 == registry.CONFIG_URL_MAX_CHARS
    # Every key at its longest: two 255-byte URLs that encode to the budget, the longest interval.
    budget = registry.CONFIG_URL_ENCODED_MAX_BYTES
    slashes = 0
    while len(quote_plus(_url_of_255(slashes + 1))) <= budget:
        slashes += 1
    url = _url_of_255(slashes)
    assert len(url) == registry.CONFIG_URL_MAX_CHARS and budget - 2 <= len(quote_plus(url)) <= budget
    worst = registry.check_config(
        {"update_url": url, "version_check_url": url, "check_interval_sec": 604800, "auto_update_enabled": 1}
    )
    assert len(registry.config_header(worst)) <= registry.DEVICE_CONFIG_HEADER_MAX_BYTES


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://h/" + "v" * 246, "at most 255"),  # 256 bytes: does not fit char[256]
        ("https://h/" + "/" * 200, "once URL-encoded"),  # 210 bytes, 810 once encoded
    ],
    ids=["256_bytes", "810_bytes_encoded"],
)
def test_controller_refuses_a_url_the_device_cannot_hold(tmp_path: Path, url: str, reason: str) -> None:
    with controller_server(tmp_path / "controller") as ctl, ctl.management_client() as mgmt:
        assert mgmt.post("/api/devices", json={"device_id": "csi_h1"}).status_code == 201
        refused = mgmt.put("/api/devices/csi_h1/config", json={"config": {"update_url": url}})
        assert refused.status_code == 422, refused.text
        assert reason in refused.text
        assert (
            mgmt.put("/api/tags/lab/config", json={"config": {"version_check_url": url}}).status_code == 422
        )
        assert mgmt.get("/api/devices/csi_h1").json()["effective_config"] == {}
        kept = mgmt.put("/api/devices/csi_h1/config", json={"config": {"update_url": LONG_UPDATE_URL}})
        assert kept.status_code == 200, kept.text


# --------------------------------------------------------------------------- the device


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[tuple[OtaTestServer, Path, Path]]:
    with OtaTestServer(token="tok-h1") as server:
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_h1",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-h1",
            backoff_initial_ms=50,
            backoff_max_ms=100,
        ).write(tmp_path / "device.conf")
        yield server, flash, config


def test_the_issues_push_reaches_the_device_whole(tmp_path: Path, sim_binary: Path) -> None:
    """Real controller: update_url of 160 characters + version_check_url; both arrive intact."""
    key_path = keys.generate_key(tmp_path / "release.pem")
    signer = ReleaseSigner(keys.load_private_key(key_path))
    with (
        controller_server(tmp_path / "controller", trusted_keys=[keys.public_key_path_for(key_path)]) as ctl,
        ctl.management_client() as mgmt,
    ):
        token = mgmt.post("/api/devices", json={"device_id": "csi_h1"}).json()["token"]
        check_url = f"{ctl.device_url}/api/ota/version"
        pushed = {"update_url": LONG_UPDATE_URL, "version_check_url": check_url, "check_interval_sec": 600}
        assert mgmt.put("/api/devices/csi_h1/config", json={"config": pushed}).status_code == 200
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_h1",
            version_check_url=check_url,
            trusted_keys=signer.trusted_keys,
            auth_token=token,
        ).write(tmp_path / "device.conf")
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            for _ in range(2):  # the second check runs with the pushed (same) check URL
                sim.send("ota check")
                sim.expect(r"ota: up to date \(running 1\.0\.0\)")
            st = status(sim)
            assert st["version_check_url"] == check_url
            assert st["check_interval_sec"] == 600
            assert st["last_check"] == "ok"
            assert sim.stop() == 0


def test_an_over_long_config_header_is_refused_and_reported(bench, sim_binary: Path) -> None:
    server, flash, config = bench
    header = (
        urlencode({"check_interval_sec": "900", "update_url": "https://h/" + "u" * 250}) + "&x=" + "y" * 600
    )
    assert len(header) > 767
    server.knobs.device_config = header
    with SimProcess(flash, config, binary=sim_binary).start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: X-Device-Config longer than 767 bytes refused \(not applied\)")
        sim.expect(r"ota: rejected: header_too_long")
        st = status(sim)
        assert st["check_interval_sec"] == 3600  # nothing of it applied, nothing truncated
        assert st["version_check_url"] == server.version_url
        assert sim.stop() == 0
    assert server.report_states() == [("rejected", "header_too_long")]


def test_a_dead_pushed_check_url_falls_back_to_the_last_working_one(bench, sim_binary: Path) -> None:
    server, flash, config = bench
    dead = "http://127.0.0.1:9/api/ota/version"  # discard port: nothing listens
    server.knobs.device_config = urlencode({"version_check_url": dead})
    with SimProcess(flash, config, binary=sim_binary).start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: config: trying check URL http://127\.0\.0\.1:9/api/ota/version")
        server.knobs.device_config = ""  # the operator notices and stops pushing it
        sim.send("reboot")  # the trial survives a reboot
        sim.expect(V1_BOOT)
        assert status(sim)["version_check_url"] == dead
        for _ in range(2):
            sim.send("ota check")
            sim.expect(r"ota: check failed: http_connect")
        sim.send("ota check")
        sim.expect(
            rf"ota: config: check URL {re.escape(dead)} failed 3 times; back to {re.escape(server.version_url)}"
        )
        sim.expect(r"ota: report \d+ rejected \(config_reverted\) acknowledged")
        sim.send("ota check")
        sim.expect(r"ota: up to date \(running 1\.0\.0\)")
        sim.send("reboot")
        sim.expect(V1_BOOT)
        st = status(sim)
        assert st["version_check_url"] == server.version_url
        assert sim.stop() == 0
    assert ("rejected", "config_reverted") in server.report_states()


def test_a_working_pushed_check_url_is_kept(bench, sim_binary: Path) -> None:
    server, flash, config = bench
    other = server.version_url.replace("/api/ota/version", "/api/ota/version?via=push")
    server.knobs.device_config = urlencode({"version_check_url": other})
    with SimProcess(flash, config, binary=sim_binary).start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: config: trying check URL")
        sim.send("ota check")
        sim.expect(r"ota: config: check URL .* works")
        sim.send("reboot")
        sim.expect(V1_BOOT)
        assert status(sim)["version_check_url"] == other
        assert sim.stop() == 0
    assert server.records.checks[-1].get("via") == "push"
