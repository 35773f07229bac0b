"""Virtual ESP32-S3 processes (csi-ota-sim) in a simulated fleet: ``csi-ota fleet --virtual-esp32 N``.

Each one gets a fresh 4 MB flash file holding a v1 image (``--initial-version``)
in a temporary directory, a config file with the controller's version-check
URL, its device token, the trusted keys and CA, a short check interval and
auto-update on, and runs the same OTA core as the real firmware. Timing:
the sim's clock runs ``--time-scale`` times faster (capped at the sim's
maximum), and its check / heartbeat intervals are chosen so that they take
the same wall-clock time as the simulated devices' intervals. Network time
does not scale (a 10 ms answer is 36 s of virtual time at 3600x), so each
post-update self-test gets SELFTEST_WINDOW_REAL_S of wall-clock time: the
Kconfig default (30 s) or more, within the option's range.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csi_ota import imagegen, keys
from csi_ota.sim.flashfile import create_flash_file
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim

SIM_MAX_TIME_SCALE = 10_000.0  # csi-ota-sim --time-scale limit (firmware/sim/idf/board/sim_board.c)
IMAGE_SIZE_BYTES = 24_000
STOP_TIMEOUT_S = 3.0  # per process and step (exit, terminate, kill)
VERSION_RE = re.compile(r"cpu_start: App version:\s+(\S+)")
SELFTEST_WINDOW_REAL_S = 0.5  # wall-clock time each self-test may spend on network round trips
SELFTEST_TIMEOUT_DEFAULT_MS = 30_000  # CONFIG_CSI_OTA_SELFTEST_TIMEOUT_MS default
SELFTEST_TIMEOUT_MAX_MS = 600_000  # its Kconfig range (firmware/main/Kconfig.projbuild)
REPORT_RE = re.compile(r"ota: report \d+ (\w+) \((\w+)\) acknowledged")


def sim_interval_s(interval_s: float, time_scale: float) -> tuple[int, float]:
    """(interval in the sim's virtual seconds, the sim's --time-scale) for a fleet interval.

    ``interval_s`` is virtual at ``time_scale``; the sim runs at most SIM_MAX_TIME_SCALE,
    so its interval is rescaled to keep the same wall-clock period (at least 1 s virtual).
    """
    sim_scale = min(time_scale, SIM_MAX_TIME_SCALE)
    return max(1, round(interval_s / time_scale * sim_scale)), sim_scale


def sim_selftest_timeout_ms(sim_scale: float) -> int:
    """CONFIG_CSI_OTA_SELFTEST_TIMEOUT_MS for a sim at ``sim_scale``: SELFTEST_WINDOW_REAL_S of wall-clock
    time, at least the Kconfig default and at most the option's maximum."""
    wanted_ms = round(SELFTEST_WINDOW_REAL_S * sim_scale * 1000)
    return min(SELFTEST_TIMEOUT_MAX_MS, max(SELFTEST_TIMEOUT_DEFAULT_MS, wanted_ms))


@dataclass
class VirtualEsp32:
    device_id: str
    process: SimProcess

    def version(self) -> str | None:
        found = [m.group(1) for line in list(self.process.lines) if (m := VERSION_RE.search(line))]
        return found[-1] if found else None

    def outcome(self) -> str:
        """The state of the last report the controller acknowledged (``none`` if there was none)."""
        found = [m.group(1) for line in list(self.process.lines) if (m := REPORT_RE.search(line))]
        return found[-1] if found else "none"

    def summary(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "version": self.version(),
            "outcome": self.outcome(),
            "running": self.process.alive(),
            "exit_code": self.process.returncode,
        }


class VirtualEsp32Fleet:
    """Starts and stops the csi-ota-sim processes of a fleet (blocking calls: use a thread)."""

    def __init__(
        self,
        credentials: list[tuple[str, str]],
        *,
        version_check_url: str,
        trusted_keys: list[Any],
        initial_version: str,
        check_interval_s: float,
        heartbeat_interval_s: float,
        time_scale: float,
        ca_cert: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.version_check_url = version_check_url
        self.trusted_keys = trusted_keys
        self.initial_version = initial_version
        self.check_interval_s = check_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.time_scale = time_scale
        self.ca_cert = ca_cert
        self.devices: list[VirtualEsp32] = []
        self.work_dir: Path | None = None

    def start(self) -> None:
        binary = build_sim()
        self.work_dir = Path(tempfile.mkdtemp(prefix="csi-ota-fleet-esp32-"))
        image = imagegen.build_app_image(
            imagegen.ImageSpec(version=self.initial_version, target_size_bytes=IMAGE_SIZE_BYTES)
        )
        trusted = keys.trusted_keys_value(self.trusted_keys)
        check_sec, sim_scale = sim_interval_s(self.check_interval_s, self.time_scale)
        heartbeat_sec, _ = sim_interval_s(self.heartbeat_interval_s, self.time_scale)
        for index, (device_id, token) in enumerate(self.credentials):
            flash = create_flash_file(self.work_dir / f"esp32-{index}.bin", images={0: image})
            config = SimConfig(
                device_id=device_id,
                version_check_url=self.version_check_url,
                trusted_keys=trusted,
                auth_token=token,
                ca_cert=self.ca_cert or "",
                check_interval_sec=check_sec,
                auto_update_enabled=True,
                heartbeat_interval_sec=heartbeat_sec,
                selftest_timeout_ms=sim_selftest_timeout_ms(sim_scale),
            ).write(self.work_dir / f"esp32-{index}.conf")
            process = SimProcess(flash, config, binary=binary, time_scale=sim_scale)
            self.devices.append(VirtualEsp32(device_id, process))
            process.start()

    def stop(self) -> None:
        """Stops every process (console ``exit``, then terminate, then kill; bounded) and removes the files."""
        for device in self.devices:
            with contextlib.suppress(Exception):  # keep stopping the others
                device.process.stop(timeout_s=STOP_TIMEOUT_S)
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def summary(self) -> list[dict[str, Any]]:
        return [d.summary() for d in self.devices]
