"""The controller's configuration: the seed's environment variables, validated at start.

Every variable has the seed's name and default; a bad value stops `csi-ota serve`
with exit code 2 and a message naming the variable, before anything listens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from csi_ota.controller.db import database_url_from_env
from csi_ota.errors import CsiOtaError

UPDATE_STRATEGIES = ("manual", "immediate", "gradual_rollout")
DEFAULT_FIRMWARE_MAX_SIZE_BYTES = 1_310_720  # the 1.25 MB OTA slot of the seed's layout

# name -> (default, minimum, maximum) for the integer variables.
INTEGER_VARIABLES: dict[str, tuple[int, int, int]] = {
    "FIRMWARE_MAX_SIZE": (DEFAULT_FIRMWARE_MAX_SIZE_BYTES, 1024, 64 * 1024 * 1024),
    "DEVICE_UPDATE_BATCH_SIZE": (5, 1, 1_000_000),
    "ROLLBACK_TIMEOUT_MIN": (30, 1, 7 * 24 * 60),
    "UPDATE_RETRY_COUNT": (3, 0, 100),
    "HEALTH_CHECK_INTERVAL_SEC": (300, 1, 24 * 3600),
}


@dataclass(frozen=True)
class ControllerSettings:
    data_dir: Path
    firmware_dir: Path
    database_url: str
    update_strategy: str = "gradual_rollout"
    firmware_max_size_bytes: int = DEFAULT_FIRMWARE_MAX_SIZE_BYTES
    device_update_batch_size: int = 5
    rollback_timeout_min: int = 30
    update_retry_count: int = 3
    health_check_interval_s: int = 300
    trusted_key_paths: tuple[Path, ...] = ()
    # Per-device token bucket (requests per second, burst), in memory per process.
    device_rate_per_s: float = 20.0
    device_rate_burst: int = 60
    max_json_body_bytes: int = 64 * 1024
    max_csi_body_bytes: int = 256 * 1024
    csi_file_max_bytes: int = 8 * 1024 * 1024
    csi_files_kept: int = 3
    # Offload: answer firmware downloads with X-Accel-Redirect: <prefix><sha256>.bin for nginx to send.
    accel_redirect_prefix: str | None = None
    # Offload: the version check's X-Firmware-Url is a link signed for nginx's secure_link module
    # (csi_ota.controller.download_links), valid this long; None: the plain /api/ota/firmware/<sha256>.
    download_link_secret: str | None = field(default=None, repr=False)
    download_link_lifetime_s: int = 7200
    # Device ids refused at registration besides ota-controller (serve adds its --mqtt-username).
    reserved_device_ids: tuple[str, ...] = ()
    # Firmware downloads one device may have in flight at once (more: 429), issue 12 H4.
    downloads_per_device: int = 4
    # `serve --mqtt-acl-dir/--mosquitto-pid-file`: keep Mosquitto's passwd/acl current (mqtt_sync).
    mqtt_acl_dir: Path | None = None
    mosquitto_pid_file: Path | None = None
    mqtt_controller_user: str = "ota-controller"
    extra: dict[str, str] = field(default_factory=dict)


def _integer(environ: Mapping[str, str], name: str) -> int:
    default, minimum, maximum = INTEGER_VARIABLES[name]
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise CsiOtaError(f"{name}={raw!r}: not an integer") from None
    if not minimum <= value <= maximum:
        raise CsiOtaError(f"{name}={value}: must be between {minimum} and {maximum}")
    return value


def trusted_keys_from_dir(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise CsiOtaError(f"TRUSTED_KEYS_DIR={directory}: not a directory")
    return sorted(p for p in directory.iterdir() if p.suffix == ".pem" and p.is_file())


def settings_from_env(
    data_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    trusted_key_paths: tuple[Path, ...] = (),
    **overrides,
) -> ControllerSettings:
    """Reads and validates the environment; raises CsiOtaError (exit 2) on the first bad value."""
    environ = os.environ if environ is None else environ
    data_dir = Path(data_dir)
    firmware_raw = environ.get("FIRMWARE_STORAGE_PATH", "").strip()
    firmware_dir = Path(firmware_raw) if firmware_raw else data_dir / "firmware"
    if firmware_dir.exists() and not firmware_dir.is_dir():
        raise CsiOtaError(f"FIRMWARE_STORAGE_PATH={firmware_dir}: exists and is not a directory")
    strategy = environ.get("UPDATE_STRATEGY", "").strip() or "gradual_rollout"
    if strategy not in UPDATE_STRATEGIES:
        raise CsiOtaError(f"UPDATE_STRATEGY={strategy!r}: must be one of {', '.join(UPDATE_STRATEGIES)}")
    keys = list(trusted_key_paths)
    keys_dir = environ.get("TRUSTED_KEYS_DIR", "").strip()
    if keys_dir:
        keys += trusted_keys_from_dir(Path(keys_dir))
    for key in keys:
        if not Path(key).is_file():
            raise CsiOtaError(f"trusted key {key}: no such file")
    return ControllerSettings(
        data_dir=data_dir,
        firmware_dir=firmware_dir,
        database_url=database_url_from_env(data_dir, dict(environ)),
        update_strategy=strategy,
        firmware_max_size_bytes=_integer(environ, "FIRMWARE_MAX_SIZE"),
        device_update_batch_size=_integer(environ, "DEVICE_UPDATE_BATCH_SIZE"),
        rollback_timeout_min=_integer(environ, "ROLLBACK_TIMEOUT_MIN"),
        update_retry_count=_integer(environ, "UPDATE_RETRY_COUNT"),
        health_check_interval_s=_integer(environ, "HEALTH_CHECK_INTERVAL_SEC"),
        trusted_key_paths=tuple(Path(k) for k in keys),
        **overrides,
    )
