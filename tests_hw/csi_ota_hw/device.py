"""What a scenario does with a device, the same on a USB ESP32-S3 and on the virtual one.

:class:`DeviceSession` bundles the DUT (pytest-embedded's, or :class:`~csi_ota_hw.sim_dut.SimDut`),
its device actions, the OTA server it talks to and the release kit, and offers the steps the
scenarios are written in: wait for a boot, offer a release, trigger a check, expect the
documented log lines (docs/log-lines.md), read ``ota status``, wait for a status report.

Log lines come from the one OTA core (tag ``ota``) that runs on both targets, plus ESP-IDF's
``App version:`` boot line. ``expect`` returns a ``re.Match`` over **bytes**.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pexpect

from csi_ota_hw.ota_server import OtaTestServer
from csi_ota_hw.releases import ReleaseKit, version_of

HW_CONSOLE_ATTEMPTS = 5
# Stable log lines (docs/log-lines.md) as bytes regexes; {…} filled with re.escape'd values.
LOG = {
    "app_version": rb"App version:\s+(\S+)",
    "update_available": rb"ota: update available: (\S+) -> (\S+) \(sequence (\d+)\)",
    "downloading": rb"ota: downloading (\S+) \((\d+) bytes\) to slot (\d+)",
    "resuming": rb"ota: resuming download at (\d+)",
    "range_ignored": rb"ota: server ignored Range; restarting from 0",
    "download_complete": rb"ota: download complete: (\d+) bytes sha256 ok",
    "boot_set": rb"ota: boot partition set to slot (\d+); rebooting into (\S+)",
    "pending_verify": rb"ota: running (\S+) from slot (\d+) \(pending_verify\): running self-test",
    "selftest_passed": rb"ota: self-test passed; marking (\S+) valid",
    "selftest_failed": rb"ota: self-test failed \((\w+)\): rolling back",
    "rollback_detected": rb"ota: rollback detected: running (\S+), (\S+) abandoned",
    "fallback_boot": rb"ota: fallback boot: running slot (\d+), boot slot (\d+)",
    "rejected": rb"ota: rejected: (\w+) \(",
    "up_to_date": rb"ota: up to date \(running (\S+)\)",
    "report_acked": rb"ota: report (\d+) (\w+) \((\w+)\) acknowledged",
    "status_json": rb"(\{\"phase\":[^\r\n]*\})\r?\n",
}


@dataclass
class DeviceSession:
    dut: Any
    device: Any
    server: OtaTestServer
    kit: ReleaseKit
    target: str
    # Hardware downloads over Wi-Fi and flashes a real chip: give every wait more time.
    timeout_scale: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not self.timeout_scale:
            self.timeout_scale = 1.0 if self.target == "sim" else 8.0

    # -- low level ----------------------------------------------------------------------------
    def expect(self, name_or_pattern: str | bytes, *args: str, timeout_s: float = 15.0) -> re.Match[bytes]:
        """Wait for a log line: a key of :data:`LOG` (with ``{}`` values) or a raw bytes regex."""
        pattern = (
            LOG.get(name_or_pattern, name_or_pattern) if isinstance(name_or_pattern, str) else name_or_pattern
        )
        if args:
            pattern = pattern.replace(rb"(\S+)", b"%s", len(args)) % tuple(
                re.escape(a.encode()) for a in args
            )
        return self.dut.expect(re.compile(pattern), timeout=timeout_s * self.timeout_scale)

    def console(self, line: str) -> None:
        self.dut.write(line)

    # -- steps --------------------------------------------------------------------------------
    def wait_boot(self, timeout_s: float = 20.0) -> str:
        """Wait for the next app start; returns the version the bootloader started."""
        return self.expect("app_version", timeout_s=timeout_s).group(1).decode()

    def status(self, timeout_s: float = 20.0) -> dict:
        """``ota status`` on the console (answered once the app serves its console).

        The simulator buffers stdin, so one request is enough. A board's UART console drops
        what arrives before its REPL starts, so on hardware the request is repeated.
        """
        attempts = 1 if self.target == "sim" else HW_CONSOLE_ATTEMPTS
        for attempt in range(attempts):
            self.console("ota status")
            try:
                match = self.expect("status_json", timeout_s=timeout_s / attempts)
            except pexpect.TIMEOUT:
                if attempt == attempts - 1:
                    raise
                continue
            return json.loads(match.group(1))
        raise AssertionError("unreachable")

    def wait_ready(self, version: str | None = None, timeout_s: float = 20.0) -> dict:
        """Wait for a boot into ``version`` (any if None) and for the console; returns ``ota status``."""
        booted = self.wait_boot(timeout_s)
        if version is not None:
            assert booted == version, f"booted {booted}, expected {version}"
        status = self.status(timeout_s)
        if self.target != "sim":
            self.point_at_server()
        return status

    def point_at_server(self) -> None:
        """Hardware: `ota url` to this test's server (the simulator's config already names it)."""
        self.console(f"ota url {self.server.version_url}")

    def otadata(self) -> list:
        """Both otadata entries (on hardware the read reboots the board: wait for the app)."""
        entries = self.device.read_otadata()
        if self.target != "sim":
            self.wait_ready()
        return entries

    def read_partition(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.device.read_partition(name, offset, length)
        if self.target != "sim":
            self.wait_ready()
        return data

    def offer(self, image: bytes, *, sequence: int | None = None, rollback: bool = False) -> bytes:
        """Assign a correctly signed release of ``image``; returns its manifest."""
        manifest = self.kit.manifest_for(image, sequence=sequence, rollback=rollback)
        self.server.assign(manifest, image)
        return manifest

    def check(self) -> None:
        self.console("ota check")

    def update(self, image: bytes, *, from_version: str, timeout_s: float = 30.0) -> dict:
        """Offer ``image``, check, and follow the update through reboot and self-test to success."""
        target = version_of(image)
        reports_before = len(self.server.status_reports)
        self.offer(image)
        self.check()
        self.expect("update_available", from_version, target, timeout_s=timeout_s)
        self.expect("boot_set", timeout_s=timeout_s)
        assert self.wait_boot(timeout_s) == target
        self.expect("selftest_passed", target, timeout_s=timeout_s)
        return self.server.wait_for_report(
            lambda r: r.get("state") == "success" and r.get("version") == target,
            timeout_s=timeout_s * self.timeout_scale,
            after_index=reports_before,
        )

    def settle(self, timeout_s: float = 30.0, poll_s: float = 0.3) -> dict:
        """Poll ``ota status`` until the client is idle with its last report acknowledged."""
        deadline = time.monotonic() + timeout_s * self.timeout_scale
        while True:
            status = self.status()
            if status["phase"] == "idle" and (
                status["last_report_acked"] or not status["last_report"]["seq"]
            ):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"the OTA client did not settle: {status}")
            time.sleep(poll_s)

    def reject(self, manifest: bytes, image: bytes, *, reason: str, timeout_s: float = 30.0) -> dict:
        """Offer a bad release, check, and return the `rejected` report with ``reason``."""
        reports_before = len(self.server.status_reports)
        self.server.assign(manifest, image)
        self.check()
        self.expect(rb"ota: rejected: " + reason.encode() + rb" \(", timeout_s=timeout_s)
        return self.server.wait_for_report(
            lambda r: r.get("state") == "rejected",
            timeout_s=timeout_s * self.timeout_scale,
            after_index=reports_before,
        )
