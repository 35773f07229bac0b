"""Checks of the suite's own machinery — no board, no simulator needed.

The esptool and idf.py command lines the hardware fixtures would run, the throttled stdout
redirect, the misbehaving OTA test server, and the otadata reader.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytest_embedded.log import MessageQueue

from csi_ota_hw.actions import (
    EsptoolActions,
    PartitionSpan,
    active_otadata,
    esptool_erase_region,
    flip_bytes,
    otadata_crc,
    parse_otadata,
    sector_span,
    shell_command,
)
from csi_ota_hw.ota_server import OtaTestServer
from csi_ota_hw.sim_dut import IDLE_POLL_INTERVAL_S, SimPopen, ThrottledRedirectProcess

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.sim, pytest.mark.esp32s3]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- esptool command lines (hardware device actions) ------------------------------------------
class RecordingLines:
    """The serial port's modem lines; counts EN pulses through the auto-reset circuit."""

    def __init__(self) -> None:
        self.dtr = False
        self._rts = False
        self.en_pulses = 0

    @property
    def rts(self) -> bool:
        return self._rts

    @rts.setter
    def rts(self, value: bool) -> None:
        if self._rts and not value and not self.dtr:  # EN low -> high with GPIO0 high: a reset
            self.en_pulses += 1
        self._rts = value


class RecordingSerial:
    """Stands in for pytest-embedded's EspSerial only to capture what would be sent to esptool."""

    port = "/dev/ttyUSB0"

    def __init__(self) -> None:
        self.proc = RecordingLines()

    @property
    def resets(self) -> int:
        return self.proc.en_pulses

    @resets.setter
    def resets(self, value: int) -> None:
        self.proc.en_pulses = value


def test_esptool_command_lines_for_each_device_action(tmp_path: Path) -> None:
    from csi_ota.partitions import default_layout

    layout = default_layout()
    spans = {e.name: PartitionSpan(e.name, e.offset, e.size) for e in layout.entries}
    drained = []
    actions = EsptoolActions(RecordingSerial(), spans, files_dir=tmp_path, drain=lambda: drained.append(1))
    run = actions.history  # every command, as logged for a replay
    executed: list[list[str]] = []

    def execute(args: list[str]) -> None:  # no board here: record, and "read" zeros
        executed.append(args)
        if "read-flash" in args:
            Path(args[-1]).write_bytes(b"\x00" * int(args[-2], 0))

    actions._execute = execute

    otadata = spans["otadata"]
    nvs = spans["nvs"]
    actions.erase_partition("otadata")
    actions.erase_nvs()
    assert run[0] == [
        "--before",
        "default-reset",
        "--after",
        "hard-reset",
        "erase-region",
        hex(otadata.offset),
        hex(otadata.size),
    ]
    assert run[1][-3:] == ["erase-region", hex(nvs.offset), hex(nvs.size)]

    ota_1 = layout.ota_slots()[1]
    actions.write_partition("ota_1", b"\xaa" * 64, offset=0x1000)
    assert run[2][:5] == ["--before", "default-reset", "--after", "hard-reset", "write-flash"]
    assert run[2][5] == hex(ota_1.offset + 0x1000)
    assert shell_command("/dev/ttyUSB0", run[0])[:5] == [
        "esptool",
        "--chip",
        "esp32s3",
        "--port",
        "/dev/ttyUSB0",
    ]
    with pytest.raises(ValueError, match="do not fit"):
        actions.write_partition("otadata", b"\x00" * (otadata.size + 1))
    with pytest.raises(KeyError, match="no partition"):
        actions.erase_partition("spiffs_missing")
    with pytest.raises(ValueError, match="4 KiB alignment"):
        esptool_erase_region(0x1001, 0x1000)

    actions.read_partition("otadata", 0, 0x2000)
    assert run[-1][:7] == [
        "--before",
        "default-reset",
        "--after",
        "hard-reset",
        "read-flash",
        hex(otadata.offset),
        "0x2000",
    ]

    # Replays name files kept under files_dir; every command ran with --after no-reset, then
    # the DUT's old output was drained and the board reset (the next boot line is this flash's).
    assert Path(run[2][-1]).parent == tmp_path and Path(run[2][-1]).read_bytes() == b"\xaa" * 64
    assert Path(run[-1][-1]).parent == tmp_path
    assert all(args[3] == "no-reset" for args in executed)
    assert actions.serial.resets == len(run) == len(drained)

    # Several edits while the board stays in the ROM loader, then one reset.
    serial = actions.serial
    serial.resets = 0
    del run[:], executed[:]
    with actions.offline():
        actions.erase_partition("otadata")
        actions.write_partition("ota_1", b"\x55" * 16)
        assert serial.resets == 0
    assert serial.resets == 1
    assert [args[3] for args in executed] == ["no-reset", "no-reset"]
    assert run[0][4:] == ["erase-region", hex(otadata.offset), hex(otadata.size)]


def test_hardware_mode_collects_without_a_board() -> None:
    """The HIL entry point collects cleanly with the esp,idf services and no board attached."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "tests_hw"),
            "--embedded-services",
            "esp,idf",
            "--target",
            "esp32s3",
            "--port",
            "/dev/ttyUSB0",
            "--app-path",
            str(REPO / "firmware"),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ("test_s1_happy_path", "test_s7_new_image_corrupted", "test_s9_resets_at_random_points"):
        assert name in result.stdout


def test_corrupting_on_hardware_rewrites_whole_sectors() -> None:
    assert sector_span(0x1010, 4) == (0x1000, 0x1000)
    assert sector_span(0x0FFE, 4) == (0x0000, 0x2000)
    data = bytes(range(16))
    flipped = flip_bytes(data, 3, 2)
    assert flipped[3] == 0xFF - 3 and flipped[4] == 0xFF - 4
    assert flipped[:3] == data[:3] and flipped[5:] == data[5:]


def test_build_test_images_command_lines(tmp_path: Path) -> None:
    """scripts/build_test_images.sh --dry-run prints the exact idf.py lines (run from a copy)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "build_test_images.sh", tmp_path / "scripts")
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    (firmware / "version.txt").write_text("1.4.2\n")
    for variant in ("v1", "v2", "v2_fail_selftest", "v2_crash_at_boot"):
        shutil.copy(REPO / "firmware" / f"sdkconfig.ci.{variant}", firmware)
    out = subprocess.run(
        [str(tmp_path / "scripts" / "build_test_images.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    expected = []
    for variant, version in (
        ("v1", "1.4.2"),
        ("v2", "2.0.0"),
        ("v2_fail_selftest", "2.0.0"),
        ("v2_crash_at_boot", "2.0.0"),
    ):
        expected.append(
            f"(cd firmware && idf.py -B build_{variant} -D IDF_TARGET=esp32s3 "
            f"-D SDKCONFIG=build_{variant}/sdkconfig "
            f"-D SDKCONFIG_DEFAULTS=sdkconfig.defaults;sdkconfig.ci.{variant} "
            f"-D PROJECT_VER={version} build)"
        )
    assert out == expected

    (firmware / "hil.sdkconfig").write_text('CONFIG_CSI_OTA_TRUSTED_KEYS="…"\n')
    with_keys = subprocess.run(
        [str(tmp_path / "scripts" / "build_test_images.sh"), "--dry-run", "v2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "CSI_OTA_EXTRA_SDKCONFIG": "hil.sdkconfig", "CSI_OTA_V2_VERSION": "7.1.0"},
    ).stdout.splitlines()
    assert with_keys == [
        "(cd firmware && idf.py -B build_v2 -D IDF_TARGET=esp32s3 -D SDKCONFIG=build_v2/sdkconfig "
        "-D SDKCONFIG_DEFAULTS=sdkconfig.defaults;sdkconfig.ci.v2;hil.sdkconfig -D PROJECT_VER=7.1.0 build)"
    ]

    bad = subprocess.run(
        [str(tmp_path / "scripts" / "build_test_images.sh"), "--dry-run", "v3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "unknown argument 'v3'" in bad.stderr


def test_sdkconfig_variants_select_the_test_behaviours() -> None:
    def options(variant: str) -> dict[str, str]:
        text = (REPO / "firmware" / f"sdkconfig.ci.{variant}").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))

    for variant in ("v1", "v2", "v2_fail_selftest", "v2_crash_at_boot"):
        opts = options(variant)
        assert opts["CONFIG_CSI_OTA_TEST_HOOKS"] == "y"
        assert opts["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
        assert opts["CONFIG_CSI_OTA_PUBLISH_HTTP"] == "y"
    assert options("v2_fail_selftest").get("CONFIG_CSI_OTA_TEST_FAIL_SELFTEST") == "y"
    assert options("v2_crash_at_boot").get("CONFIG_CSI_OTA_TEST_CRASH_AT_BOOT") == "y"
    assert "CONFIG_CSI_OTA_TEST_FAIL_SELFTEST" not in options("v2")
    assert "CONFIG_CSI_OTA_TEST_CRASH_AT_BOOT" not in options("v1")


# -- otadata ---------------------------------------------------------------------------------
def test_otadata_reader_matches_esp_idf_crc_and_selection() -> None:
    assert otadata_crc(1) == 0x4743989A and otadata_crc(2) == 0x55F63774
    assert otadata_crc(0) == 0xFFFFFFFF

    def entry(seq: int, state: int, crc: int | None = None) -> bytes:
        raw = seq.to_bytes(4, "little") + b"\xff" * 20 + state.to_bytes(4, "little")
        raw += (otadata_crc(seq) if crc is None else crc).to_bytes(4, "little")
        return raw.ljust(4096, b"\xff")

    views = parse_otadata(entry(1, 2) + entry(2, 1))
    assert [(v.seq, v.state, v.crc_ok) for v in views] == [(1, "valid", True), (2, "pending_verify", True)]
    assert active_otadata(views).seq == 2
    views = parse_otadata(entry(1, 2) + entry(2, 4))  # aborted entries are skipped
    assert active_otadata(views).seq == 1
    views = parse_otadata(entry(1, 2) + entry(3, 2, crc=0x1234))  # a bad CRC is skipped
    assert active_otadata(views).seq == 1
    assert active_otadata(parse_otadata(b"\xff" * 8192)) is None
    with pytest.raises(ValueError):
        parse_otadata(b"\xff" * 100)


# -- the throttled redirect ------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def test_redirect_forwards_output_and_idles_without_spinning(tmp_path: Path) -> None:
    queue = MessageQueue()
    script = "import sys, time; print('boot line 1'); print('boot line 2'); sys.stdout.flush(); time.sleep(3)"
    proc = SimPopen(queue, [sys.executable, "-c", script])
    try:
        assert isinstance(proc._p, ThrottledRedirectProcess)
        received = b""
        deadline = time.monotonic() + 10
        while b"boot line 2" not in received and time.monotonic() < deadline:
            received += queue.get(timeout=10)
        assert b"boot line 1\nboot line 2\n" in received
        redirect_pid = proc._p.pid
        before = _cpu_seconds(redirect_pid)
        time.sleep(1.0)
        idle_cpu = _cpu_seconds(redirect_pid) - before
        # Unthrottled, this loop burns ~1 CPU-second per second; throttled it sleeps.
        assert idle_cpu < 0.3, f"redirect used {idle_cpu:.2f} CPU-s in 1 s while idle"
        assert IDLE_POLL_INTERVAL_S <= 0.05
    finally:
        proc.kill()
        proc.wait(timeout=5)
        proc.close()


# -- the OTA test server ---------------------------------------------------------------------
TOKEN = "test-token"


def _get(server: OtaTestServer, path: str, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
    resp = conn.getresponse()
    try:
        body = resp.read()
    except http.client.IncompleteRead as exc:
        body = exc.partial
    conn.close()
    return resp, body


def test_ota_server_speaks_the_device_protocol() -> None:
    image = bytes(range(256)) * 40
    with OtaTestServer(token=TOKEN) as server:
        resp, _ = _get(server, "/api/ota/version")
        assert resp.status == 204
        release = server.assign(b"format=1\n", image)
        resp, body = _get(server, "/api/ota/version?device_id=d1&version=1.0.0")
        assert resp.status == 200 and body == b"format=1\n"
        firmware_url = resp.getheader("X-Firmware-Url")
        assert firmware_url == f"/api/ota/firmware/{release.sha256}"
        assert server.requests[-1].query == {"device_id": "d1", "version": "1.0.0"}

        resp, body = _get(server, firmware_url)
        assert resp.status == 200 and body == image
        resp, body = _get(server, firmware_url, {"Range": "bytes=1000-"})
        assert resp.status == 206 and body == image[1000:]
        assert resp.getheader("Content-Range") == f"bytes 1000-{len(image) - 1}/{len(image)}"
        resp, _ = _get(server, firmware_url, {"Range": f"bytes={len(image)}-"})
        assert resp.status == 416

        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", "/api/ota/version", headers={"Authorization": "Bearer wrong"})
        assert conn.getresponse().status == 401
        conn.close()

        report = {"device_id": "d1", "seq": 7, "state": "success", "reason": "ok"}
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request(
            "POST",
            "/api/ota/status",
            body=json.dumps(report),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"ack_seq": 7}
        conn.close()
        assert server.wait_for_report(lambda r: r["state"] == "success", timeout_s=1) == report
        with pytest.raises(TimeoutError, match="no matching status report"):
            server.wait_for_report(lambda r: r["state"] == "failed", timeout_s=0.2)


def test_ota_server_misbehaves_on_request() -> None:
    image = os.urandom(20_000)
    with OtaTestServer(token=TOKEN) as server:
        release = server.assign(b"m\n", image)
        path = f"/api/ota/firmware/{release.sha256}"

        server.behaviour.range_support = False
        resp, body = _get(server, path, {"Range": "bytes=5000-"})
        assert resp.status == 200 and body == image  # Range ignored: the whole body again

        server.behaviour.range_support = True
        server.behaviour.chunked = True
        resp, body = _get(server, path)
        assert resp.getheader("Transfer-Encoding") == "chunked" and resp.getheader("Content-Length") is None
        assert body == image

        server.behaviour.chunked = False
        server.behaviour.cut_after_bytes = [6000]
        resp, body = _get(server, path)
        assert len(body) == 6000 and body == image[:6000]
        assert server.firmware_requests()[-1].body_bytes_sent == 6000

        server.behaviour.redirect_firmware = True
        resp, _ = _get(server, "/api/ota/version")
        redirect = resp.getheader("X-Firmware-Url")
        assert redirect.startswith("/redirect/firmware/")
        resp, _ = _get(server, redirect)
        assert resp.status == 302 and resp.getheader("Location") == path
