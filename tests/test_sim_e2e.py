"""End to end on the virtual ESP32-S3: the firmware itself (firmware/main, the ESP-IDF port
and the OTA core) over the host layer of firmware/sim/idf and the flash and bootloader model
(csi-ota-sim, docs/sim.md), against a local HTTP server (tests/sim_support.py), with real
signed releases.

Every scenario starts from a 4 MB flash file with v1.0.0 in ota_0, runs
`ota check` on the device console, and asserts both what the device logs
(docs/log-lines.md) and what reached the server (status reports, requests).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from csi_ota import keys
from csi_ota.certs import create_ca, create_server_cert
from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.provision import ProvisionConfig, build_nvs_image
from csi_ota.sim.flashfile import create_flash_file, erase_partition
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim
from services import controller_server
from sim_support import OtaTestServer, ReleaseSigner, app_image, write_flash

pytestmark = [pytest.mark.sim]

IMAGE_BYTES = 150_000
CHUNK_BYTES = 4096
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
V2_BOOT = r"app: running partition ota_1, version 2\.0\.0"


@pytest.fixture(scope="session")
def sim_binary() -> Path:
    return build_sim()


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
def bench(tmp_path: Path, sim_binary: Path) -> Iterator[Bench]:
    with OtaTestServer(token="tok-001") as server:
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_sensor_001",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-001",
            chunk_size_bytes=CHUNK_BYTES,
            persist_interval_bytes=16 * CHUNK_BYTES,
        ).write(tmp_path / "device.conf")
        yield Bench(server, signer, flash, config, sim_binary)


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
    assert (heartbeat["device_id"], heartbeat["rssi"]) == ("csi_sensor_001", -55)
    # The running slot and the intervals it runs with (SimConfig's defaults: the seed's 3600 s
    # check, 300 s heartbeat), which the rollout engine judges reach and silence against.
    intervals = (heartbeat["slot"], heartbeat["check_interval_sec"], heartbeat["heartbeat_interval_sec"])
    assert intervals == (0, 3600, 300)
    # CSI frames from the synthetic radio reach POST /api/csi/data in batches.
    assert bench.server.records.csi_posts > 0
    assert bench.server.records.csi_bytes % 168 == 0  # 40-byte header + 128 CSI bytes per frame


def test_console_commands_answer_and_refuse_bad_input(bench: Bench) -> None:
    """firmware/main/console_cmds.c over the host esp_console: every command and its usage line."""
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.expect(r"boot complete: 1\.0\.0 valid", from_start=True)
        sim.send("help")
        for command in (
            "help",
            "version",
            r"ota check\|status\|url <manifest-url>",
            "reboot",
            "selftest fail-next",
        ):
            sim.expect(rf"^{command}\s*$", from_start=True)
        sim.send("ota")
        sim.expect(r"^usage: ota check \| ota status \| ota url <manifest-url>$")
        sim.send("ota frobnicate")
        sim.expect(r"^usage: ota check")
        sim.send("ota url ftp://127.0.0.1/manifest")
        sim.expect(r"^ota url: expected an http:// or https:// URL of at most 255 characters$")
        sim.send("ota url http://127.0.0.1/" + "x" * 300)
        sim.expect(r"^ota url: expected an http:// or https:// URL")
        sim.send("selftest")
        sim.expect(r"^usage: selftest fail-next$")
        sim.send("selftest fail-next")
        sim.expect(r"^next self-test will fail$")
        sim.send(f"ota url {bench.server.version_url}")
        sim.expect(r"^ota url set$")
        # The client's log line and the console's answer come in either order.
        sim.expect(rf"ota: manifest url set to {bench.server.version_url}", from_start=True)
        sim.send("reboot")
        sim.expect(r"console: reboot requested from the console")
        sim.expect(r"boot: ESP-IDF virtual ESP32-S3 2nd stage bootloader \(boot 2\)")
        sim.expect(V1_BOOT)
        sim.send("version")
        sim.expect(r"^csi_sensor 1\.0\.0 \(ESP-IDF v6\.\d+, state valid\)$")
        assert status(sim)["version_check_url"] == bench.server.version_url  # persisted in NVS
        assert sim.stop() == 0


def test_trusted_key_list_problems_are_logged_and_the_good_key_still_works(
    bench: Bench, tmp_path: Path
) -> None:
    """firmware/main/trusted_keys.c: a malformed entry and an entry whose id is not its key's are
    ignored with a reason; the good key verifies the release. Without any good key nothing is
    trusted and every manifest is refused."""
    good = bench.signer.trusted_keys
    key_id, key_hex = good.split(":")
    wrong_id = "00" * 8 if key_id != "00" * 8 else "11" * 8
    config = SimConfig(
        device_id="csi_sensor_keys",
        version_check_url=bench.server.version_url,
        trusted_keys=f"not-a-key,{wrong_id}:{key_hex},{good}",
        auth_token="tok-001",
    ).write(tmp_path / "keys.conf")
    image = bench.publish("2.0.0")
    with SimProcess(bench.flash, config, binary=bench.binary).start() as sim:
        sim.expect(r"trusted_keys: malformed trusted key entry 0, ignored", from_start=True)
        sim.expect(
            rf"trusted_keys: trusted key {wrong_id}: id is not SHA-256\(key\)\[0:8\], ignored",
            from_start=True,
        )
        sim.expect(rf"trusted_keys: trusted release key {key_id}", from_start=True)
        sim.expect(V1_BOOT, from_start=True)
        sim.send("ota check")
        sim.expect(rf"ota: download complete: {len(image)} bytes sha256 ok")
        sim.expect(V2_BOOT)
        assert sim.stop() == 0
    none = SimConfig(
        device_id="csi_sensor_keys",
        version_check_url=bench.server.version_url,
        trusted_keys="not-a-key",
        auth_token="tok-001",
    ).write(tmp_path / "nokeys.conf")
    flash = write_flash(tmp_path / "nokeys.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
    with SimProcess(flash, none, binary=bench.binary).start() as sim:
        sim.expect(r"trusted_keys: no trusted release key: every manifest will be refused", from_start=True)
        sim.expect(V1_BOOT, from_start=True)
        sim.send("ota check")
        sim.expect(r"ota: rejected: manifest_key")
        assert sim.stop() == 0


def test_without_a_device_id_the_firmware_names_itself_after_its_mac(bench: Bench, tmp_path: Path) -> None:
    """provisioning.c: neither the provisioning image nor the build sets a device id, so the
    firmware derives csi_<station MAC> (the board derives its MAC from the flash file)."""
    config = SimConfig(
        version_check_url=bench.server.version_url,
        trusted_keys=bench.signer.trusted_keys,
        auth_token="tok-001",
    ).write(tmp_path / "anon.conf")
    with SimProcess(bench.flash, config, binary=bench.binary).start() as sim:
        sim.expect(
            r"provisioning: no provisioning image \(NVS namespace csi_ota\): Kconfig defaults",
            from_start=True,
        )
        device = sim.expect(r"publish_http: publishing to \S+ as (csi_[0-9a-f]{12})$", from_start=True).group(
            1
        )
        sim.expect(V1_BOOT, from_start=True)
        sim.send("ota check")
        sim.expect(r"ota: up to date \(running 1\.0\.0\)")
        assert sim.stop() == 0
    assert bench.server.records.checks[-1]["device_id"] == device


def test_update_succeeds_and_is_marked_valid(bench: Bench) -> None:
    image = bench.publish("2.0.0")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: update available: 1\.0\.0 -> 2\.0\.0 \(sequence 1\)")
        sim.expect(rf"ota: download complete: {len(image)} bytes sha256 ok")
        sim.expect(r"ota: boot partition set to slot 1; rebooting into 2\.0\.0")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
        bench.server.wait_for_report("success")
        # The periodic heartbeat starts right after the confirm: v2, valid.
        sim.expect(r"heartbeat: sent \(version 2\.0\.0, ota_state valid\)")
        st = status(sim)
        assert (st["version"], st["running_slot"], st["boot_slot"], st["img_state"]) == (
            "2.0.0",
            1,
            1,
            "valid",
        )
        assert st["highest_sequence"] == 1
        # The confirmed image stays: a reboot does not roll back.
        sim.send("reboot")
        sim.expect(V2_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: already running 2\.0\.0 \(sequence 1\)")
        assert sim.stop() == 0
    states = bench.server.report_states()
    assert states == [
        ("downloading", "ok"),
        ("downloaded", "ok"),
        ("pending_verify", "ok"),
        ("success", "ok"),
    ]
    reports = bench.server.records.reports
    assert [r["seq"] for r in reports] == [1, 2, 3, 4]
    assert all(r["target_version"] == "2.0.0" and r["device_id"] == "csi_sensor_001" for r in reports)
    heartbeats = bench.server.records.heartbeats
    assert any(h["ota_state"] == "pending_verify" for h in heartbeats), "the self-test's heartbeat"
    periodic = [h for h in heartbeats if (h["version"], h["ota_state"]) == ("2.0.0", "valid")]
    assert periodic, "a periodic heartbeat reached the server after v2 was marked valid"
    assert set(periodic[0]) == {
        "device_id",
        "version",
        "uptime_s",
        "rssi",
        "csi_frames",
        "free_heap",
        "ota_state",
        "slot",
        "check_interval_sec",
        "heartbeat_interval_sec",
    }
    assert periodic[0]["device_id"] == "csi_sensor_001" and periodic[0]["csi_frames"] > 0
    assert heartbeats[-1]["slot"] == 1  # the slot it runs now
    assert bench.server.records.unauthorised == 0
    check = bench.server.records.checks[0]
    assert (check["device_id"], check["version"], check["slot"], check["state"]) == (
        "csi_sensor_001",
        "1.0.0",
        "0",
        "valid",
    )


def test_selftest_failure_rolls_back_to_v1(bench: Bench) -> None:
    bench.publish("2.0.0", behaviour="fail_selftest")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test failed \(csi_frames\): rolling back")
        sim.expect(V1_BOOT)
        report = bench.server.wait_for_report("rolled_back")
        assert (report["reason"], report["target_version"], report["version"]) == (
            "selftest",
            "2.0.0",
            "1.0.0",  # the version it goes back to
        )
        st = status(sim)
        assert (st["version"], st["running_slot"], st["img_state"]) == ("1.0.0", 0, "valid")
        # The same release is not installed again: its sequence was accepted once.
        downloads = len(bench.server.records.firmware)
        sim.send("ota check")
        sim.expect(r"ota: rejected: manifest_replay")
        assert len(bench.server.records.firmware) == downloads
        assert sim.stop() == 0
    assert ("success", "ok") not in bench.server.report_states()


def test_forced_selftest_failure_from_console_rolls_back(bench: Bench) -> None:
    bench.publish("2.0.0")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("selftest fail-next")
        sim.expect(r"^next self-test will fail$")
        sim.send("ota check")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test failed \(forced\): rolling back")
        sim.expect(V1_BOOT)
        assert sim.stop() == 0
    assert bench.server.wait_for_report("rolled_back")["reason"] == "selftest"


def test_crash_at_boot_is_abandoned_by_the_bootloader(bench: Bench) -> None:
    bench.publish("2.0.0", behaviour="crash_at_boot")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"cpu_start: App version:      2\.0\.0")  # it dies before app_main
        sim.expect(r"Guru Meditation Error")
        sim.expect(V1_BOOT)
        sim.expect(r"ota: rollback detected: running 1\.0\.0, 2\.0\.0 abandoned")
        report = bench.server.wait_for_report("rolled_back")
        assert (report["reason"], report["target_version"], report["version"]) == (
            "rolled_back",
            "2.0.0",
            "1.0.0",
        )
        st = status(sim)
        assert (st["version"], st["running_slot"], st["boot_slot"]) == ("1.0.0", 0, 0)
        # v2 never confirmed itself: no success, no pending_verify from the crashing image.
        assert [s for s, _ in bench.server.report_states()] == ["downloading", "downloaded", "rolled_back"]
        # An interrupted first boot may be a power cut: the release is installed again,
        # at most retry_count (3) more times, then refused.
        for install in (2, 3, 4):
            sim.send("ota check")
            sim.expect(rf"ota: retrying 2\.0\.0 after an interrupted boot \(install {install} of 4\)")
            sim.expect(r"Guru Meditation Error")
            sim.expect(r"ota: rollback detected: running 1\.0\.0, 2\.0\.0 abandoned")
        sim.send("ota check")
        sim.expect(r"ota: rejected: manifest_replay")
        sim.expect(V1_BOOT, from_start=True)
        assert status(sim)["version"] == "1.0.0"
        assert sim.stop() == 0
    states = [s for s, _ in bench.server.report_states()]
    assert states.count("downloaded") == 4
    assert states.count("rolled_back") == 4
    assert "success" not in states


def test_corrupted_download_is_rejected_and_v1_keeps_running(bench: Bench) -> None:
    bench.publish("2.0.0")
    bench.server.knobs.corrupt_offset = 70_000
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: rejected: image_digest")
        report = bench.server.wait_for_report("rejected")
        assert (report["reason"], report["target_version"]) == ("image_digest", "2.0.0")
        st = status(sim)
        assert (st["version"], st["running_slot"], st["boot_slot"], st["img_state"]) == (
            "1.0.0",
            0,
            0,
            "valid",
        )
        sim.send("reboot")
        sim.expect(V1_BOOT)
        assert sim.stop() == 0
    assert len(bench.server.records.firmware) == 1, "a digest mismatch is not retried"


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


def test_cut_connection_resumes_with_range(bench: Bench) -> None:
    image = bench.publish("2.0.0")
    cut = 50_000
    bench.server.knobs.cut_after_bytes = cut
    bench.server.knobs.cut_count = 1
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: download failed \(http_truncated\) at 50000 bytes; retry 1 of 3")
        sim.expect(rf"ota: resuming download at {cut}$")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
        bench.server.wait_for_report("success")
        assert sim.stop() == 0
    requests = bench.server.records.firmware
    assert [(r.range_start, r.status) for r in requests] == [(None, 200), (cut, 206)]
    assert requests[0].bytes_sent == cut
    assert requests[1].bytes_sent == len(image) - cut
    assert bench.server.firmware_bytes_sent() - len(image) <= CHUNK_BYTES


def test_server_ignoring_range_restarts_from_zero(bench: Bench) -> None:
    image = bench.publish("2.0.0")
    bench.server.knobs.cut_after_bytes = 60_000
    bench.server.knobs.cut_count = 1
    bench.server.knobs.ignore_range = True
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: server ignored Range; restarting from 0")
        sim.expect(rf"ota: download complete: {len(image)} bytes sha256 ok")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
        bench.server.wait_for_report("success")
        assert sim.stop() == 0
    requests = bench.server.records.firmware
    assert [(r.range_start, r.status) for r in requests] == [(None, 200), (60_000, 200)]
    assert requests[1].bytes_sent == len(image)
    assert bench.server.wait_for_report("success")["target_version"] == "2.0.0"


def test_server_errors_are_retried_with_backoff(bench: Bench) -> None:
    bench.publish("2.0.0")
    bench.server.knobs.fail_500_count = 2
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: download failed \(http_status\) at 0 bytes; retry 1 of 3 in 200 ms")
        sim.expect(r"ota: download failed \(http_status\) at 0 bytes; retry 2 of 3 in 400 ms")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: self-test passed")
        assert sim.stop() == 0
    assert [r.status for r in bench.server.records.firmware] == [500, 500, 200]


def test_retries_exhausted_reports_failed_and_keeps_v1(bench: Bench) -> None:
    bench.publish("2.0.0")
    bench.server.knobs.fail_500_count = 10
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: update failed: http_status")
        report = bench.server.wait_for_report("failed")
        assert report["reason"] == "http_status"
        assert status(sim)["version"] == "1.0.0"
        assert sim.stop() == 0
    assert len(bench.server.records.firmware) == 4  # first try + retry_count 3


def test_an_undelivered_outcome_is_repeated_until_acknowledged(bench: Bench) -> None:
    bench.publish("2.0.0", behaviour="fail_selftest")
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        bench.server.knobs.fail_status_states = {"rolled_back": 1}  # controller down at the rollback
        sim.send("ota check")
        sim.expect(V2_BOOT)
        sim.expect(r"ota: report 4 rolled_back \(selftest\) not delivered: http_status; will repeat")
        sim.expect(V1_BOOT)
        assert status(sim)["last_report_acked"] is False
        assert ("rolled_back", "selftest") not in bench.server.report_states()
        sim.send("reboot")  # the outcome survives a reboot in the KV store
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: report 4 rolled_back \(selftest\) acknowledged")
        assert status(sim)["last_report_acked"] is True
        assert sim.stop() == 0
    check = bench.server.records.checks[-1]
    assert (check["last_seq"], check["last_reason"]) == ("4", "selftest")
    # Delivered late but in order; then the re-offered release is refused as a replay.
    assert bench.server.report_states()[-2:] == [("rolled_back", "selftest"), ("rejected", "manifest_replay")]
    assert [r["seq"] for r in bench.server.records.reports] == [1, 2, 3, 4, 5]


def test_manifest_from_an_untrusted_key_is_rejected(bench: Bench) -> None:
    stranger = ReleaseSigner()
    bench.server.publish(stranger.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: rejected: manifest_key")
        # The same refusal again is not reported twice.
        sim.send("ota check")
        sim.expect(r"ota: rejected: manifest_key")
        assert sim.stop() == 0
    assert bench.server.report_states() == [("rejected", "manifest_key")]
    assert bench.server.records.firmware == []


def test_downgrade_needs_a_signed_rollback(bench: Bench) -> None:
    image_090 = app_image("0.9.0", size_bytes=IMAGE_BYTES)
    bench.server.publish(bench.signer.release(image_090))
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: rejected: downgrade")
        bench.server.publish(bench.signer.release(image_090, rollback=True))
        sim.send("ota check")
        sim.expect(r"ota: update available: 1\.0\.0 -> 0\.9\.0 \(sequence 2\)")
        sim.expect(r"app: running partition ota_1, version 0\.9\.0")
        sim.expect(r"ota: self-test passed; marking 0\.9\.0 valid")
        assert sim.stop() == 0


def test_periodic_checks_update_by_themselves_and_back_off_on_failure(
    tmp_path: Path, sim_binary: Path
) -> None:
    with OtaTestServer(token="tok-auto") as server:
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_sensor_auto",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-auto",
            auto_update_enabled=True,
            check_interval_sec=300,  # 0.3 s of real time at --time-scale 1000
            # The Kconfig default: 30 ms of real time per self-test (SimConfig's 2 s would be 2 ms,
            # and the radio reports once per 5 ms of real time at this scale: docs/sim.md).
            selftest_timeout_ms=30_000,
        ).write(tmp_path / "device.conf")
        with SimProcess(flash, config, binary=sim_binary, time_scale=1000).start() as sim:
            sim.expect(V1_BOOT)
            for _ in range(3):
                sim.expect(r"ota: up to date \(running 1\.0\.0\)", timeout_s=10)
            server.publish(signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
            sim.expect(V2_BOOT, timeout_s=20)  # no console command: the schedule did it
            sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
            # Written to otadata before this line: a stop before it is a power cut in
            # pending_verify, and the next boot would roll back.
            sim.expect(r"ota_client: boot complete: 2\.0\.0 valid")
            assert sim.stop() == 0
    # Controller gone: failed checks back off exponentially (200, 400, 800 ms …, capped).
    config_down = SimConfig(
        device_id="csi_sensor_auto",
        version_check_url="http://127.0.0.1:9/api/ota/version",
        trusted_keys=signer.trusted_keys,
        auto_update_enabled=True,
        check_interval_sec=300,
        backoff_initial_ms=200,
        backoff_max_ms=1600,
    ).write(tmp_path / "down.conf")
    with SimProcess(flash, config_down, binary=sim_binary, time_scale=1000).start() as sim:
        sim.expect(V2_BOOT)
        delays = [int(sim.expect(r"ota: next check in (\d+) ms", timeout_s=10).group(1)) for _ in range(5)]
        assert sim.stop() == 0
    assert delays == [200, 400, 800, 1600, 1600]


def test_largest_image_fits_and_a_larger_one_is_refused(bench: Bench) -> None:
    slot_bytes = 0x140000  # ota_1 of the 4MB layout (the seed's 1.25 MB)
    too_big = app_image("3.0.0", size_bytes=slot_bytes + 4096)
    bench.server.publish(bench.signer.release(too_big))
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: rejected: image_too_large")
        biggest = app_image("2.0.0", size_bytes=slot_bytes - 4096)
        bench.server.publish(bench.signer.release(biggest))
        sim.send("ota check")
        sim.expect(rf"ota: download complete: {len(biggest)} bytes sha256 ok")
        sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
        assert sim.stop() == 0
    assert bench.server.records.firmware[-1].bytes_sent == len(biggest)


def test_image_for_another_chip_revision_is_refused_before_download(bench: Bench) -> None:
    # v1 runs on v0.0 – v1.99; v2 was built for v0.0 – v0.99 only; this chip is v1.0.
    v1 = build_app_image(ImageSpec("1.0.0", max_rev_full=199, target_size_bytes=IMAGE_BYTES))
    write_flash(bench.flash, v1)
    bench.publish("2.0.0")
    with bench.start(chip_rev_full=100) as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: rejected: chip_revision")
        bench.server.wait_for_report("rejected")
        assert sim.stop() == 0
    assert bench.server.records.firmware == []
    assert bench.server.report_states() == [("rejected", "chip_revision")]


def test_pushed_config_and_manifest_url_survive_reboot(bench: Bench) -> None:
    bench.server.knobs.device_config = "check_interval_sec=600&auto_update_enabled=1&device_id=evil"
    with bench.start() as sim:
        sim.expect(V1_BOOT)
        sim.send("ota check")
        sim.expect(r"ota: up to date \(running 1\.0\.0\)")
        sim.send("ota url http://127.0.0.1:9/elsewhere")
        sim.expect(r"^ota url set$")
        sim.expect(r"ota: manifest url set to http://127\.0\.0\.1:9/elsewhere", from_start=True)
        # The OTA task applies and persists it; `ota status` answers once it holds the client.
        assert status(sim)["version_check_url"] == "http://127.0.0.1:9/elsewhere"
        sim.send("ota url not-a-url")
        sim.expect(r"^ota url: expected an http:// or https:// URL")
        sim.send("reboot")
        sim.expect(V1_BOOT)
        st = status(sim)
        assert st["check_interval_sec"] == 600
        assert st["auto_update_enabled"] is True
        assert st["version_check_url"] == "http://127.0.0.1:9/elsewhere"
        assert sim.stop() == 0
    assert bench.server.records.checks[0]["device_id"] == "csi_sensor_001"


def test_update_over_https_with_the_provisioned_ca(tmp_path: Path, sim_binary: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    server_cert = create_server_cert(tmp_path / "ca", tmp_path / "server")
    with OtaTestServer(token="tok-tls", tls=(server_cert.cert, server_cert.key)) as server:
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_sensor_tls",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-tls",
            ca_cert=str(ca.cert),
        )
        config.write(tmp_path / "device.conf")
        server.publish(signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
        with SimProcess(flash, tmp_path / "device.conf", binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(V2_BOOT)
            sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
            server.wait_for_report("success")
            assert sim.stop() == 0
        # With another CA the device refuses the server: not even the check gets through.
        flash = write_flash(tmp_path / "flash2.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config.ca_cert = str(create_ca(tmp_path / "other-ca").cert)  # a CA that did not sign it
        config.write(tmp_path / "untrusting.conf")
        before = len(server.records.checks)
        with SimProcess(flash, tmp_path / "untrusting.conf", binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(r"ota: check failed: http_connect")
            assert sim.stop() == 0
        assert len(server.records.checks) == before
    assert server.scheme == "https"


def test_outcomes_reach_the_real_controller(tmp_path: Path, sim_binary: Path) -> None:
    """The same device against `csi-ota serve` (SQLite): success and a rollback land in its registry."""
    key_path = keys.generate_key(tmp_path / "release.pem")
    signer = ReleaseSigner(keys.load_private_key(key_path))
    trusted = [keys.public_key_path_for(key_path)]
    with (
        controller_server(tmp_path / "controller", trusted_keys=trusted) as ctl,
        ctl.management_client() as mgmt,
    ):
        created = mgmt.post("/api/devices", json={"device_id": "csi_sensor_ctl", "tags": ["lab"]})
        assert created.status_code == 201, created.text
        token = created.json()["token"]

        def assign(image: bytes) -> str:
            release = signer.release(image)
            upload = mgmt.post(
                "/api/releases",
                content=release.image,
                headers={"X-Release-Manifest": base64.b64encode(release.manifest).decode()},
            )
            assert upload.status_code == 201, upload.text
            put = mgmt.put("/api/devices/csi_sensor_ctl/assignment", json={"release": release.version})
            assert put.status_code == 200, put.text
            return release.version

        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_sensor_ctl",
            version_check_url=f"{ctl.device_url}/api/ota/version",
            trusted_keys=signer.trusted_keys,
            auth_token=token,
        ).write(tmp_path / "device.conf")
        assign(app_image("2.0.0", size_bytes=IMAGE_BYTES))
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(V2_BOOT)
            sim.expect(r"ota: report \d+ success \(ok\) acknowledged")
            assign(app_image("2.1.0", behaviour="fail_selftest", size_bytes=IMAGE_BYTES))
            sim.send("ota check")
            sim.expect(r"ota: self-test failed \(csi_frames\): rolling back")
            sim.expect(V2_BOOT)
            sim.expect(r"ota: report \d+ rolled_back \(selftest\) acknowledged", from_start=True)
            assert sim.stop() == 0
        reports = mgmt.get("/api/devices/csi_sensor_ctl/reports").json()
        device = mgmt.get("/api/devices/csi_sensor_ctl").json()
    outcomes = [(r["state"], r["reason"], r["target_version"]) for r in reversed(reports)]
    assert outcomes == [
        ("downloading", "ok", "2.0.0"),
        ("downloaded", "ok", "2.0.0"),
        ("pending_verify", "ok", "2.0.0"),
        ("success", "ok", "2.0.0"),
        ("downloading", "ok", "2.1.0"),
        ("downloaded", "ok", "2.1.0"),
        ("pending_verify", "ok", "2.1.0"),
        ("rolled_back", "selftest", "2.1.0"),
    ]
    assert [r["seq"] for r in reversed(reports)] == list(range(1, 9))
    assert device["version"] == "2.0.0"


def test_settings_come_from_the_nvs_provisioning_image(tmp_path: Path, sim_binary: Path) -> None:
    """QA's flow: certs -> provision -> flash with --nvs. The image's device id, token, URLs and CA
    override the config file (whose URL is dead); erasing the nvs partition falls back to the file."""
    ca = create_ca(tmp_path / "ca")
    server_cert = create_server_cert(tmp_path / "ca", tmp_path / "server")
    with OtaTestServer(token="tok-nvs", tls=(server_cert.cert, server_cert.key)) as server:
        signer = ReleaseSigner()
        nvs = build_nvs_image(
            ProvisionConfig(
                update_url=server.version_url.replace("/version", "/firmware"),
                version_check_url=server.version_url,
                device_id="csi_sensor_nvs",
                auth_token="tok-nvs",
                check_interval_sec=3600,
                auto_update_enabled=False,
                ca_cert=ca.cert.read_text(),
                data_url=server.base_url,  # heartbeats and CSI data (the self-test's heartbeat)
            )
        )
        flash = create_flash_file(
            tmp_path / "flash.bin", images={0: app_image("1.0.0", size_bytes=IMAGE_BYTES)}, nvs=nvs
        )
        config = SimConfig(
            device_id="from_the_file",
            version_check_url="http://127.0.0.1:9/api/ota/version",  # discard port: nothing listens
            trusted_keys=signer.trusted_keys,
        ).write(tmp_path / "device.conf")
        server.publish(signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            provisioned = (
                r"provisioning: device csi_sensor_nvs, check https://127\.0\.0\.1:\d+/api/ota/version "
                r"every 3600 s \(auto off\), CA provisioned"
            )
            sim.expect(V1_BOOT)
            sim.expect(provisioned)
            sim.send("ota check")
            sim.expect(V2_BOOT)
            sim.expect(provisioned)  # every boot
            sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
            server.wait_for_report("success")
            assert sim.stop() == 0
        reports = server.records.reports
        assert reports and {r["device_id"] for r in reports} == {"csi_sensor_nvs"}
        erase_partition(flash, "nvs")
        before = len(server.records.checks)
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V2_BOOT)
            sim.expect(r"provisioning: no provisioning image \(NVS namespace csi_ota\): Kconfig defaults")
            sim.send("ota check")
            sim.expect(r"ota: check failed: http_connect")
            assert sim.stop() == 0
        assert len(server.records.checks) == before


def test_a_damaged_entry_of_the_provisioning_image_is_skipped(bench: Bench) -> None:
    url = bench.server.version_url
    nvs = bytearray(build_nvs_image(ProvisionConfig(url, url, "nvs_id", "tok-001")))
    at = nvs.index(b"device_id\x00")
    nvs[at - 8 + 2] = 0  # span 0 in the device_id entry's header: its CRC no longer matches
    create_flash_file(bench.flash, images={0: app_image("1.0.0", size_bytes=IMAGE_BYTES)}, nvs=bytes(nvs))
    with bench.start() as sim:  # skipped, as NVS does: the config file's device id stays
        sim.expect(r"provisioning: device csi_sensor_001, check http://127\.0\.0\.1:\d+/api/ota/version")
        sim.send("ota check")
        sim.expect(r"ota: up to date \(running 1\.0\.0\)")
        assert sim.stop() == 0
    assert [c["device_id"] for c in bench.server.records.checks] == ["csi_sensor_001"]


def test_an_out_of_range_interval_in_the_provisioning_image_is_ignored(bench: Bench) -> None:
    url = bench.server.version_url
    nvs = bytearray(build_nvs_image(ProvisionConfig(url, url, "nvs_id", "tok-001")))
    entry = nvs.index(b"check_int_sec\x00") - 8
    nvs[entry + 24 : entry + 28] = (0).to_bytes(4, "little")  # an interval of 0 s, with a valid CRC
    crc = zlib.crc32(bytes(nvs[entry : entry + 4] + nvs[entry + 8 : entry + 32]), 0xFFFFFFFF)
    nvs[entry + 4 : entry + 8] = (crc & 0xFFFFFFFF).to_bytes(4, "little")
    create_flash_file(bench.flash, images={0: app_image("1.0.0", size_bytes=IMAGE_BYTES)}, nvs=bytes(nvs))
    with bench.start() as sim:  # firmware/main/provisioning.c: below 60 s is ignored
        sim.expect(r"provisioning: check_int_sec 0 below 60 s, ignored")
        sim.expect(r"provisioning: device nvs_id, .* every 3600 s")
        assert status(sim)["check_interval_sec"] == 3600
        assert sim.stop() == 0


def test_bad_command_line_and_config_exit_2(bench: Bench, tmp_path: Path) -> None:
    sim = SimProcess(bench.flash, tmp_path / "missing.conf", binary=bench.binary).start()
    assert sim.wait_exit() == 2
    assert "cannot open" in sim.output()
    bad = tmp_path / "bad.conf"
    bad.write_text("device_id=x\ncheck_interval_sec=zz\n")
    sim = SimProcess(bench.flash, bad, binary=bench.binary).start()
    assert sim.wait_exit() == 2
    assert "bad.conf:2: invalid value for check_interval_sec: 'zz'" in sim.output()
    sim = SimProcess(bench.flash, bench.config, binary=bench.binary, extra_args=["--bogus", "1"]).start()
    assert sim.wait_exit() == 2
    assert "unknown option --bogus" in sim.output()


# ---------------------------------------------------------------------------
# Power-cut sweep: every flash operation of a full v1 -> v2 update
# ---------------------------------------------------------------------------

SWEEP_IMAGE_BYTES = 40_000  # 10 sectors: every kind of operation, few of each
SWEEP_MAX_OPS = 400
BOOT_ANY = r"app: running partition (ota_[01]), version (1\.0\.0|2\.0\.0)"
SETTLED = (
    r"ota: already running 2\.0\.0|ota: self-test passed; marking 2\.0\.0 valid|ota: rejected|"
    r"ota: update failed|ota: check failed|ota: up to date"
)
BOOTED = r"ota_client: boot complete"


def _run_until_cut(bench: Bench, cut_at: int) -> bool:
    """One update with power cut at operation ``cut_at``; True if the cut happened."""
    with bench.start(power_cut_at=cut_at) as sim:
        sim.expect(rf"POWER CUT at flash op|{BOOTED}", timeout_s=20)
        if sim.returncode is None and not any("POWER CUT" in line for line in sim.lines):
            sim.send("ota check")
            sim.expect(r"POWER CUT at flash op|ota: report \d+ success \(ok\) acknowledged", timeout_s=30)
        cut = any("POWER CUT" in line for line in sim.lines)
        if cut:
            assert sim.wait_exit(10) == 75
    return cut


def _recover_and_finish(bench: Bench, cut_at: int) -> set[str]:
    """Boot after the cut: a valid image must run, and the update must complete (retries allowed).

    Returns what the recovery went through (booted version, resumed, re-installed, rolled back).
    """
    with bench.start() as sim:
        boot = sim.expect(BOOT_ANY, timeout_s=20)
        sim.expect(BOOTED, timeout_s=20)
        for _ in range(4):
            st = status(sim)
            if st["version"] == "2.0.0" and st["img_state"] == "valid":
                break
            sim.send("ota check")
            settled = sim.expect(SETTLED, timeout_s=30)
            if "self-test passed" in settled.group(0):
                sim.expect(BOOTED, timeout_s=30)
        st = status(sim)
        assert sim.stop() == 0
    where = f"power cut at op {cut_at}: booted {boot.group(1)} {boot.group(2)}"
    assert (st["version"], st["img_state"]) == ("2.0.0", "valid"), where
    assert st["running_slot"] == st["boot_slot"] == 1, where
    log = sim.output()
    seen = {f"booted {boot.group(2)}"}
    for marker in ("resuming download at", "after an interrupted boot", "rollback detected", "not activated"):
        if marker in log:
            seen.add(marker)
    return seen


@pytest.mark.slow
def test_power_cut_at_every_flash_operation_of_an_update(tmp_path: Path, sim_binary: Path) -> None:
    with OtaTestServer(token="tok-cut") as server:
        signer = ReleaseSigner()
        template = write_flash(tmp_path / "template.bin", app_image("1.0.0", size_bytes=SWEEP_IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_sensor_cut",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-cut",
            chunk_size_bytes=CHUNK_BYTES,
            persist_interval_bytes=2 * CHUNK_BYTES,
            selftest_timeout_ms=1000,
        ).write(tmp_path / "device.conf")
        server.publish(signer.release(app_image("2.0.0", size_bytes=SWEEP_IMAGE_BYTES)))
        flash = tmp_path / "flash.bin"
        bench = Bench(server, signer, flash, config, sim_binary)
        cut_points = 0
        outcomes: set[str] = set()
        for cut_at in range(1, SWEEP_MAX_OPS + 1):
            shutil.copyfile(template, flash)
            if not _run_until_cut(bench, cut_at):
                break  # the whole update ran with fewer operations: every point is covered
            cut_points += 1
            outcomes |= _recover_and_finish(bench, cut_at)
        else:
            pytest.fail(f"the update still had flash operations after {SWEEP_MAX_OPS}")
    print(f"power-cut sweep: {cut_points} cut points, recoveries went through {sorted(outcomes)}")
    assert cut_points > 30, f"only {cut_points} operations in a full update: the sweep is not covering it"
    # The cuts landed in every phase: download (resume), first boot of v2 (bootloader
    # rollback, then a bounded re-install), and after the switch (v2 boots).
    assert {
        "booted 1.0.0",
        "booted 2.0.0",
        "resuming download at",
        "after an interrupted boot",
    } <= outcomes, outcomes
