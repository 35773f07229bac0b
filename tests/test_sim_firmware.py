"""The virtual ESP32-S3 running the firmware itself: firmware/main and the ESP-IDF port
(components/ota_port_espidf) over the host layer of firmware/sim/idf, on the flash and
bootloader model (csi-ota-sim, docs/sim.md). The same end-to-end scenarios as
tests/test_sim_e2e.py, asserted on the firmware's own log lines and on what reached the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from csi_ota.sim.runner import SIM_FIRMWARE_BINARY, SimConfig, SimProcess, build_sim
from sim_support import OtaTestServer, ReleaseSigner, app_image, write_flash

pytestmark = [pytest.mark.sim]

IMAGE_BYTES = 150_000
CHUNK_BYTES = 4096
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
V2_BOOT = r"app: running partition ota_1, version 2\.0\.0"


@pytest.fixture(scope="session")
def firmware_binary() -> Path:
    build_sim()
    assert SIM_FIRMWARE_BINARY.exists()
    return SIM_FIRMWARE_BINARY


@dataclass
class Bench:
    server: OtaTestServer
    signer: ReleaseSigner
    flash: Path
    config: Path
    binary: Path

    def start(self, **kwargs: object) -> SimProcess:
        return SimProcess(self.flash, self.config, binary=self.binary, **kwargs).start()  # type: ignore[arg-type]

    def publish(self, version: str, behaviour: str = "normal") -> bytes:
        image = app_image(version, behaviour, IMAGE_BYTES)
        self.server.publish(self.signer.release(image))
        return image


@pytest.fixture
def bench(tmp_path: Path, firmware_binary: Path) -> Iterator[Bench]:
    with OtaTestServer(token="tok-fw") as server:
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_sensor_fw",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-fw",
            chunk_size_bytes=CHUNK_BYTES,
            persist_interval_bytes=16 * CHUNK_BYTES,
        ).write(tmp_path / "device.conf")
        yield Bench(server, signer, flash, config, firmware_binary)


def status(sim: SimProcess) -> dict[str, object]:
    sim.send("ota status")
    return json.loads(sim.expect(r"^\{.*\}$").group(0))


def test_firmware_boots_its_tasks_on_the_virtual_board(bench: Bench) -> None:
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        # The tasks start in app_main's order; their lines interleave.
        sim.expect(r'wifi: joining "csi-lab"')
        sim.expect(r"boot complete: 1\.0\.0 valid", from_start=True)
        sim.expect(r"heartbeat: sent \(version 1\.0\.0, ota_state valid\)", from_start=True)
        sim.expect(r"wifi: connected, ip 192\.168\.4\.2", from_start=True)
        sim.send("version")
        sim.expect(r"^csi_sensor 1\.0\.0 \(ESP-IDF v6\.\d+, state valid\)$")
        sim.send("no-such-command")
        sim.expect(r"^Unrecognized command$")
        assert status(sim)["version"] == "1.0.0"
        deadline = time.monotonic() + 10
        while bench.server.records.csi_posts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sim.stop() == 0
    heartbeat = bench.server.records.heartbeats[-1]
    assert (heartbeat["device_id"], heartbeat["rssi"]) == ("csi_sensor_fw", -55)
    # The running slot and the intervals it runs with (SimConfig's defaults: the seed's 3600 s
    # check, 300 s heartbeat), which the rollout engine judges reach and silence against.
    intervals = (heartbeat["slot"], heartbeat["check_interval_sec"], heartbeat["heartbeat_interval_sec"])
    assert intervals == (0, 3600, 300)
    # CSI frames from the synthetic radio reach POST /api/csi/data in batches.
    assert bench.server.records.csi_posts > 0
    assert bench.server.records.csi_bytes % 168 == 0  # 40-byte header + 128 CSI bytes per frame


def test_update_succeeds_and_is_marked_valid(bench: Bench) -> None:
    image = bench.publish("2.0.0")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"^ota check requested$")
        sim.expect(r"ota: update available: 1\.0\.0 -> 2\.0\.0 \(sequence 1\)")
        sim.expect(rf"ota: download complete: {len(image)} bytes sha256 ok")
        sim.expect(r"ota: boot partition set to slot 1; rebooting into 2\.0\.0")
        sim.expect(r"boot: ESP-IDF virtual ESP32-S3 2nd stage bootloader \(boot 2\)")
        sim.expect(V2_BOOT)
        for hook in ("wifi_up", "controller_reachable", "csi_frames", "heartbeat_acked"):
            sim.expect(rf"ota: self-test {hook} ok")
        sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
        bench.server.wait_for_report("success")
        sim.expect(r"heartbeat: sent \(version 2\.0\.0, ota_state valid\)")
        st = status(sim)
        assert (st["version"], st["running_slot"], st["boot_slot"], st["img_state"]) == (
            "2.0.0",
            1,
            1,
            "valid",
        )
        assert sim.stop() == 0
    assert bench.server.report_states() == [
        ("downloading", "ok"),
        ("downloaded", "ok"),
        ("pending_verify", "ok"),
        ("success", "ok"),
    ]
    states = [h["ota_state"] for h in bench.server.records.heartbeats]
    assert "pending_verify" in states and states[-1] == "valid"
    assert bench.server.records.heartbeats[-1]["slot"] == 1  # the slot it runs now


def test_selftest_failure_rolls_back_to_v1(bench: Bench) -> None:
    bench.publish("2.0.0", behaviour="fail_selftest")  # a board whose radio captures no CSI
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test csi_frames failed: timeout")
        sim.expect(r"ota: self-test failed \(csi_frames\): rolling back")
        sim.expect(V1_BOOT)
        report = bench.server.wait_for_report("rolled_back")
        assert (report["reason"], report["target_version"], report["version"]) == (
            "selftest",
            "2.0.0",
            "1.0.0",
        )
        st = status(sim)
        assert (st["version"], st["running_slot"], st["img_state"]) == ("1.0.0", 0, "valid")
        assert sim.stop() == 0


def test_crash_at_boot_is_abandoned_by_the_bootloader(bench: Bench) -> None:
    bench.publish("2.0.0", behaviour="crash_at_boot")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"cpu_start: App version:      2\.0\.0")
        sim.expect(r"Guru Meditation Error")
        sim.expect(V1_BOOT)
        sim.expect(r"ota: rollback detected: running 1\.0\.0, 2\.0\.0 abandoned")
        report = bench.server.wait_for_report("rolled_back")
        assert (report["reason"], report["target_version"]) == ("rolled_back", "2.0.0")
        assert sim.stop() == 0


def test_power_cut_during_the_download_resumes(bench: Bench) -> None:
    image = bench.publish("2.0.0")
    with bench.start(power_cut_at=12) as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"POWER CUT at flash op 12")
        assert sim.wait_exit(10) == 75
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(rf"ota: download complete: {len(image)} bytes sha256 ok")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
        bench.server.wait_for_report("success")
        assert sim.stop() == 0
