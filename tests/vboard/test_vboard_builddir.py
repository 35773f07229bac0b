"""Build directories for the virtual board: pytest-embedded-idf reads them as idf.py's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from csi_ota.cli import cli
from csi_ota.release import describe_image

REPO = Path(__file__).resolve().parents[2]
PART_TOOL = REPO / "host_tools" / "csi_ota" / "vboard" / "parttool.py"


def build(tmp_path: Path, variant: str, version: str, *extra: str) -> Path:
    out = tmp_path / f"build_{variant}"
    result = CliRunner().invoke(
        cli,
        [
            "board",
            "build-dir",
            str(out),
            "--variant",
            variant,
            "--version",
            version,
            "--sdkconfig",
            str(REPO / "sdkconfig.defaults"),
            "--sdkconfig",
            str(REPO / "firmware" / f"sdkconfig.ci.{variant}"),
            *extra,
            "--partitions",
            str(REPO / "firmware" / "partitions.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_idf_app_parses_the_build_directory_as_a_real_build(tmp_path: Path) -> None:
    from esptool.bin_image import LoadFirmwareImage
    from pytest_embedded_idf.app import IdfApp

    keys = tmp_path / "keys.sdkconfig"
    keys.write_text('CONFIG_CSI_OTA_TRUSTED_KEYS="0011223344556677:04' + "ab" * 64 + '"\n')
    out = build(tmp_path, "v2_crash_at_boot", "2.0.0", "--sdkconfig", str(keys))

    app = IdfApp(app_path=str(tmp_path), build_dir=out.name, part_tool=str(PART_TOOL))
    assert app.target == "esp32s3"
    assert [(f.offset, Path(f.file_path).relative_to(out).as_posix()) for f in app.flash_files] == [
        (0x0, "bootloader/bootloader.bin"),
        (0x8000, "partition_table/partition-table.bin"),
        (0x1D000, "ota_data_initial.bin"),
        (0x20000, "csi_sensor.bin"),
    ]
    assert app.flash_settings["flash_size"] == "4MB"
    table = app.partition_table
    assert (table["nvs"]["offset"], table["otadata"]["offset"], table["ota_1"]["offset"]) == (
        0x9000,
        0x1D000,
        0x160000,
    )
    assert table["otadata"]["size"] == 0x2000

    description = json.loads((out / "project_description.json").read_text())
    app_image = (out / description["app_bin"]).read_bytes()
    info = describe_image(app_image)
    assert info.version == "2.0.0"
    assert b"crash_at_boot" in app_image  # the behaviour marker the virtual chip acts on
    bootloader = LoadFirmwareImage("esp32s3", str(out / "bootloader" / "bootloader.bin"))
    assert bootloader.chip_id == 9 and bootloader.entrypoint
    assert (out / "ota_data_initial.bin").read_bytes() == b"\xff" * 0x2000
    settings = (out / "config" / "csi-ota-sim.conf").read_text()
    assert "trusted_keys=0011223344556677:04" in settings
    # Compile-time options are the board's firmware build (sdkconfig.ci.v1), not settings.
    assert "allow_plain_http" not in settings
    sdkconfig = json.loads((out / "config" / "sdkconfig.json").read_text())
    assert sdkconfig["IDF_TARGET"] == "esp32s3" and sdkconfig["CSI_OTA_TEST_CRASH_AT_BOOT"] is True


def test_parttool_prints_gen_esp32part_csv_and_refuses_garbage(tmp_path: Path) -> None:
    out = build(tmp_path, "v1", "1.0.0")
    done = subprocess.run(
        [sys.executable, str(PART_TOOL), str(out / "partition_table" / "partition-table.bin")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "nvs,data,nvs,0x9000,80K," in done.stdout
    assert "ota_1,app,ota_1,0x160000,1280K," in done.stdout
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    done = subprocess.run(
        [sys.executable, str(PART_TOOL), str(junk)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "parttool.py" in done.stderr


def test_unknown_variant_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["board", "build-dir", str(tmp_path / "x"), "--variant", "v9", "--version", "1.0.0"]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "x").exists()
