"""The virtual ESP32-S3's files for one test: a fresh flash file and its configuration.

``csi-ota-sim --flash FILE --config FILE`` (firmware/sim/idf/board/sim_board.c): the flash file is
made by :func:`csi_ota.sim.flashfile.create_flash_file` with v1 in ota_0 and otadata erased
(the state a freshly flashed board is in); NVS lives in its nvs partition, as on a board.
The config file is the simulator's stand-in for the
NVS provisioning image: URLs, token, the trusted release key, and timings short enough for
tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from csi_ota_hw.ota_server import OtaTestServer

# Timings for tests: quick retries and self-tests, resume state saved every chunk so a reset
# costs at most one chunk of re-download.
SIM_TEST_SETTINGS = {
    "check_interval_sec": "3600",
    "auto_update_enabled": "0",  # tests trigger checks with the console's `ota check`
    "retry_count": "3",
    "http_timeout_ms": "3000",
    "backoff_initial_ms": "200",
    "backoff_max_ms": "1000",
    "chunk_size_bytes": "4096",
    "persist_interval_bytes": "4096",
    "selftest_timeout_ms": "1000",
}
MAX_BOOTS = 30
SIM_DEVICE_ID = "tests-hw-sim"
SIM_TOKEN = "tests-hw-sim-token"


def write_sim_config(
    path: Path,
    *,
    server: OtaTestServer,
    device_id: str,
    token: str,
    key_id: str,
    public_key_raw: bytes,
    overrides: dict[str, str] | None = None,
) -> Path:
    """The simulator's key=value config pointing at ``server``, trusting the release key."""
    settings = {
        "version_check_url": server.version_url,
        "update_url": f"{server.base_url}/firmware/latest",
        "device_id": device_id,
        "auth_token": token,
        "project": "csi_sensor",
        "trusted_keys": f"{key_id}:{public_key_raw.hex()}",
        **SIM_TEST_SETTINGS,
        **(overrides or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# tests_hw virtual ESP32-S3 configuration\n" + "".join(f"{k}={v}\n" for k, v in settings.items())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


@dataclass
class SimEnvironment:
    workdir: Path
    binary: Path
    flash_path: Path
    config_path: Path

    @classmethod
    def create(cls, workdir: Path, *, binary: Path, v1_image: bytes, config: Path) -> SimEnvironment:
        from csi_ota.sim.flashfile import create_flash_file

        workdir.mkdir(parents=True, exist_ok=True)
        flash_path = workdir / "flash.bin"
        create_flash_file(flash_path, images={0: v1_image})
        return cls(workdir=workdir, binary=binary, flash_path=flash_path, config_path=config)

    def args(self) -> list[str]:
        return [
            "--flash",
            str(self.flash_path),
            "--config",
            str(self.config_path),
            "--max-boots",
            str(MAX_BOOTS),
        ]
