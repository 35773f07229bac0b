"""Build directories laid out like idf.py's, for the virtual board (no ESP-IDF needed).

scripts/build_test_images.sh calls :func:`write_build_dir` for each tests_hw variant when no
ESP-IDF is installed. pytest-embedded-idf's IdfApp reads such a directory exactly as a real
build: ``flasher_args.json`` (flash files, offsets, esptool options), ``project_description.json``
(``app_bin``), ``config/sdkconfig.json`` (``IDF_TARGET``), ``partition_table/partition-table.bin``.
The files are the real formats: the app is a csi_ota.imagegen ESP32-S3 image (the virtual
ESP32-S3 runs it; its behaviour marker makes the crash and failing-self-test variants), the
bootloader an ESP32-S3 image made with esptool's own image classes, the partition table
csi_ota.partitions' binary of firmware/partitions.csv, ota_data_initial.bin two erased sectors.

One file is the virtual board's own: ``config/csi-ota-sim.conf``, the app's build-time
settings (what Kconfig bakes into a real image: trusted release keys, project name, timings)
in csi-ota-sim's ``--config`` format; ``csi-ota board serve --config`` takes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from csi_ota.errors import CsiOtaError
from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.partitions import load_layout

APP_BIN = "csi_sensor.bin"
PROJECT_NAME = "csi_sensor"
TARGET = "esp32s3"
BOOTLOADER_OFFSET = 0x0
PARTITION_TABLE_OFFSET = 0x8000
BOOTLOADER_ENTRY = 0x403C8914
BOOTLOADER_LOAD_ADDRESS = 0x403C8700
FLASH_SETTINGS = {"flash_mode": "dio", "flash_size": "4MB", "flash_freq": "80m"}
SIM_CONFIG_NAME = "csi-ota-sim.conf"
TEST_IMAGE_BYTES = 70_000

# tests_hw variant -> the behaviour marker its image carries (docs/sim-markers.md) and the
# Kconfig option that makes a real build behave so (firmware/sdkconfig.ci.*).
VARIANT_BEHAVIOURS = {
    "v1": "normal",
    "v2": "normal",
    "v2_fail_selftest": "fail_selftest",
    "v2_crash_at_boot": "crash_at_boot",
}
# csi-ota-sim settings for the test images: quick retries and self-tests, state saved every
# chunk (the same values tests_hw's --target sim run uses, csi_ota_hw.sim_env).
SIM_TEST_SETTINGS = {
    "retry_count": "3",
    "http_timeout_ms": "3000",
    "backoff_initial_ms": "200",
    "backoff_max_ms": "1000",
    "chunk_size_bytes": "4096",
    "persist_interval_bytes": "4096",
    "selftest_timeout_ms": "1000",
}
_KCONFIG_LINE = re.compile(r"^(CONFIG_\w+)=(.*)$")
_KCONFIG_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")


def read_sdkconfig(paths: Iterable[Path]) -> dict[str, object]:
    """sdkconfig-style files applied in order, as sdkconfig.json holds them (no CONFIG_ prefix)."""
    values: dict[str, object] = {}
    for path in paths:
        for raw in Path(path).read_text().splitlines():
            line = raw.strip()
            unset = _KCONFIG_UNSET.match(line)
            if unset:
                values[unset.group(1)[len("CONFIG_") :]] = False
                continue
            match = _KCONFIG_LINE.match(line)
            if not match:
                continue
            name, value = match.group(1)[len("CONFIG_") :], match.group(2)
            if value == "y":
                values[name] = True
            elif value.startswith('"') and value.endswith('"') and len(value) >= 2:
                values[name] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            else:
                try:
                    values[name] = int(value, 0)
                except ValueError:
                    values[name] = value
    return values


def bootloader_image() -> bytes:
    """A small, valid ESP32-S3 image (esptool image-info reads it; the virtual ROM skips it)."""
    from esptool.bin_image import ELFSection, ESP32S3FirmwareImage

    image = ESP32S3FirmwareImage()
    image.entrypoint = BOOTLOADER_ENTRY
    code = (b"csi-ota virtual ESP32-S3 second-stage bootloader stand-in\x00").ljust(256, b"\x00")
    image.segments = [ELFSection(b".iram_loader.text", BOOTLOADER_LOAD_ADDRESS, code, flags=0)]
    image.append_digest = True
    image.flash_mode = 2  # DIO
    image.flash_size_freq = 0x2F  # 4MB, 80m
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"csi-ota-bootloader-{os.getpid()}.bin"
    try:
        image.save(str(out))
        return out.read_bytes()
    finally:
        out.unlink(missing_ok=True)


@dataclass(frozen=True)
class BuildDir:
    path: Path
    version: str
    behaviour: str


def write_build_dir(
    out_dir: Path,
    *,
    variant: str,
    version: str,
    sdkconfig_files: Iterable[Path],
    partitions_csv: Path,
    image_size_bytes: int = TEST_IMAGE_BYTES,
    extra_settings: Mapping[str, str] | None = None,
) -> BuildDir:
    """Write one idf.py-like build directory; files are replaced atomically, one by one."""
    if variant not in VARIANT_BEHAVIOURS:
        raise CsiOtaError(f"unknown variant {variant!r}; one of {', '.join(VARIANT_BEHAVIOURS)}")
    behaviour = VARIANT_BEHAVIOURS[variant]
    sdkconfig_paths = [Path(p) for p in sdkconfig_files]
    sdkconfig = {"IDF_TARGET": TARGET, "IDF_TARGET_ESP32S3": True, "IDF_TARGET_ARCH_XTENSA": True}
    sdkconfig.update(read_sdkconfig(sdkconfig_paths))
    sdkconfig["APP_PROJECT_VER"] = version
    layout = load_layout(partitions_csv)
    otadata = layout.find("otadata")
    app_slot = layout.find("ota_0")

    files: dict[str, bytes] = {
        APP_BIN: build_app_image(
            ImageSpec(version=version, behaviour=behaviour, target_size_bytes=image_size_bytes)
        ),
        "bootloader/bootloader.bin": bootloader_image(),
        "partition_table/partition-table.bin": layout.to_binary(),
        "ota_data_initial.bin": b"\xff" * otadata.size,
    }
    offsets = {
        "bootloader": (BOOTLOADER_OFFSET, "bootloader/bootloader.bin"),
        "partition-table": (PARTITION_TABLE_OFFSET, "partition_table/partition-table.bin"),
        "otadata": (otadata.offset, "ota_data_initial.bin"),
        "app": (app_slot.offset, APP_BIN),
    }
    flasher_args = {
        "write_flash_args": [
            "--flash-mode",
            FLASH_SETTINGS["flash_mode"],
            "--flash-size",
            FLASH_SETTINGS["flash_size"],
            "--flash-freq",
            FLASH_SETTINGS["flash_freq"],
        ],
        "flash_settings": dict(FLASH_SETTINGS),
        "flash_files": {hex(offset): name for offset, name in sorted(offsets.values())},
        **{
            key: {"offset": hex(offset), "file": name, "encrypted": "false"}
            for key, (offset, name) in offsets.items()
        },
        "extra_esptool_args": {
            "after": "hard-reset",
            "before": "default-reset",
            "stub": True,
            "chip": TARGET,
        },
    }
    out = Path(out_dir)
    description = {
        "version": "1.3",
        "project_name": PROJECT_NAME,
        "project_version": version,
        "project_path": str(partitions_csv.resolve().parent),
        "idf_path": "",
        "build_dir": str(out.resolve()),
        "config_file": str((out / "sdkconfig").resolve()),
        "config_defaults": ";".join(str(p) for p in sdkconfig_paths),
        "app_elf": "",
        "app_bin": APP_BIN,
        "build_type": "flash_app",
        "target": TARGET,
        "min_rev": "0",
        "max_rev": "99",
        "generator": "csi-ota virtual board (scripts/build_test_images.sh without ESP-IDF)",
    }
    settings = {
        "project": PROJECT_NAME,
        "check_interval_sec": "3600",
        "auto_update_enabled": "0",
        **SIM_TEST_SETTINGS,
        **(extra_settings or {}),
    }
    # Compile-time options (publishing, CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP, test hooks) are the
    # virtual board's firmware build (csi-ota-sim, sdkconfig.ci.v1), not settings.
    trusted = sdkconfig.get("CSI_OTA_TRUSTED_KEYS")
    if isinstance(trusted, str) and trusted:
        settings["trusted_keys"] = trusted
    files["flasher_args.json"] = (json.dumps(flasher_args, indent=4) + "\n").encode()
    files["project_description.json"] = (json.dumps(description, indent=4) + "\n").encode()
    files["config/sdkconfig.json"] = (json.dumps(sdkconfig, indent=4, sort_keys=True) + "\n").encode()
    files["sdkconfig"] = (
        "".join(
            f"CONFIG_{k}={'y' if v is True else v}\n" if v is not False else f"# CONFIG_{k} is not set\n"
            for k, v in sorted(sdkconfig.items())
            if not isinstance(v, str)
        ).encode()
        + "".join(f'CONFIG_{k}="{v}"\n' for k, v in sorted(sdkconfig.items()) if isinstance(v, str)).encode()
    )
    files[f"config/{SIM_CONFIG_NAME}"] = (
        "# csi-ota-sim --config: the app's build-time settings (Kconfig on a real build)\n"
        + "".join(f"{k}={v}\n" for k, v in settings.items())
    ).encode()
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return BuildDir(path=out, version=version, behaviour=behaviour)
