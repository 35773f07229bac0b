"""csi-ota doctor: rollback in the bootloader, the partition table vs the spec, flash size, anti-rollback, HTTPS."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from csi_ota import keys
from csi_ota.cli import main
from csi_ota.doctor import parse_sdkconfig, run_doctor
from csi_ota.errors import CsiOtaError
from csi_ota.partitions import load_layout

REPO = Path(__file__).resolve().parent.parent
ESP_IDF_MIRROR = Path("/work/.mirror/espressif+esp-idf/repo")

GOOD = """\
CONFIG_IDF_TARGET="esp32s3"
CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y
CONFIG_ESPTOOLPY_FLASHSIZE="4MB"
CONFIG_PARTITION_TABLE_CUSTOM=y
CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"
CONFIG_PARTITION_TABLE_OFFSET=0x8000
CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y
# CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK is not set
CONFIG_COMPILER_OPTIMIZATION_SIZE=y
CONFIG_MBEDTLS_SSL_PROTO_TLS1_3=y
"""
# A real release key, as `csi-ota keys show-public --format kconfig` prints it.
TRUSTED = keys.kconfig_trusted_keys_line([ec.generate_private_key(ec.SECP256R1()).public_key()]) + "\n"
GOOD += TRUSTED


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


def make_firmware(root: Path, sdkconfig: str | None, csv: str | None = None) -> Path:
    firmware = root / "firmware"
    firmware.mkdir(parents=True)
    if sdkconfig is not None:
        (firmware / "sdkconfig").write_text(sdkconfig)
    (firmware / "partitions.csv").write_text(csv if csv is not None else load_layout("4MB").to_csv())
    return firmware


def findings(firmware: Path, *extra: object) -> tuple[int, dict[str, list[tuple[str, str]]]]:
    code, out, err = run_cli("doctor", firmware, "--json", *extra)
    assert out, err
    report = json.loads(out)
    by_check: dict[str, list[tuple[str, str]]] = {}
    for f in report["findings"]:
        by_check.setdefault(f["check"], []).append((f["level"], f["message"]))
    return code, by_check


def levels(by_check: dict[str, list[tuple[str, str]]], check: str) -> set[str]:
    return {level for level, _ in by_check.get(check, [])}


def test_repository_defaults_pass_once_release_keys_are_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(REPO)
    code, out, err = run_cli("doctor", "firmware")
    assert code == 1 and "trusted-keys" in err  # a fresh checkout has no release key yet
    report = run_doctor(REPO / "firmware")
    assert [f.check for f in report.errors] == ["trusted-keys"]
    with_keys = tmp_path / "sdkconfig.defaults"
    with_keys.write_text((REPO / "sdkconfig.defaults").read_text() + TRUSTED)
    code, out, err = run_cli("doctor", "firmware", "--sdkconfig", with_keys)
    assert code == 0, out + err
    assert "OTA configuration OK" in out
    report = run_doctor(REPO / "firmware", sdkconfig=with_keys)
    assert report.used_defaults
    assert {f.check for f in report.findings} >= {
        "rollback",
        "partition-table",
        "partition-spec",
        "flash-size",
        "https",
        "trusted-keys",
        "nvs-encryption",
    }
    # Only NVS encryption is left to the integrator (it needs a per-device eFuse key).
    assert [f.check for f in report.findings if f.level != "ok"] == ["nvs-encryption"], report.findings


def test_good_built_sdkconfig(tmp_path: Path):
    code, by_check = findings(make_firmware(tmp_path, GOOD))
    assert code == 0
    assert levels(by_check, "rollback") == {"ok"}
    assert levels(by_check, "partition-spec") == {"ok"}


def test_rollback_off_is_an_error_that_explains_issue_4799(tmp_path: Path):
    firmware = make_firmware(tmp_path, GOOD.replace("CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y", ""))
    code, by_check = findings(firmware)
    assert code == 1
    ((level, message),) = by_check["rollback"]
    assert level == "error"
    assert "lost silently" in message and "esp-idf issue 4799" in message
    code, out, err = run_cli("doctor", firmware)
    assert code == 1 and "error(s)" in out and "rollback" in err


def test_old_option_names_are_understood(tmp_path: Path):
    firmware = make_firmware(
        tmp_path, GOOD.replace("CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y", "CONFIG_APP_ROLLBACK_ENABLE=y")
    )
    code, by_check = findings(firmware)
    assert code == 0
    assert levels(by_check, "rollback") == {"ok"}
    assert (
        "CONFIG_APP_ROLLBACK_ENABLE (now CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE)"
        in by_check["option-names"][0][1]
    )


def test_builtin_partition_table_is_an_error(tmp_path: Path):
    firmware = make_firmware(
        tmp_path, GOOD.replace("CONFIG_PARTITION_TABLE_CUSTOM=y", "CONFIG_PARTITION_TABLE_TWO_OTA=y")
    )
    code, by_check = findings(firmware)
    assert code == 1
    assert "CONFIG_PARTITION_TABLE_CUSTOM is off" in by_check["partition-table"][0][1]


def test_missing_and_invalid_tables(tmp_path: Path):
    firmware = make_firmware(tmp_path / "a", GOOD)
    (firmware / "partitions.csv").unlink()
    code, by_check = findings(firmware)
    assert code == 1 and "does not exist" in by_check["partition-table"][0][1]

    bad = (
        "nvs,data,nvs,0x9000,0x6000\notadata,data,ota,0xf000,0x2000\nota_0,app,ota_0,0x20000,0x100000\n"
        "ota_2,app,ota_2,0x120000,0x100000\n"
    )
    code, by_check = findings(make_firmware(tmp_path / "b", GOOD, bad))
    assert code == 1
    messages = " ".join(m for _, m in by_check["partition-table"])
    assert "partition 'ota_2' breaks rule ota-contiguous" in messages
    assert levels(by_check, "ota-slots") == {"error"}  # only one usable slot


def test_table_offset_is_taken_from_the_config(tmp_path: Path):
    moved = GOOD.replace("CONFIG_PARTITION_TABLE_OFFSET=0x8000", "CONFIG_PARTITION_TABLE_OFFSET=0x10000")
    code, by_check = findings(make_firmware(tmp_path, moved))
    assert code == 1
    assert any("partition 'nvs' breaks rule after-table" in m for _, m in by_check["partition-table"])


def test_table_out_of_date_with_spec(tmp_path: Path):
    csv = load_layout("4MB").to_csv().replace("0x2a0000, 0x160000", "0x2a0000, 0x150000")
    code, by_check = findings(make_firmware(tmp_path, GOOD, csv))
    assert code == 1
    ((level, message),) = by_check["partition-spec"]
    assert level == "error" and "differs from the shipped 4MB layout in spiffs" in message


def test_user_spec(tmp_path: Path):
    spec = tmp_path / "mine.toml"
    spec.write_text(
        'flash_size = "4MB"\n'
        '[[partitions]]\nname = "nvs"\ntype = "data"\nsubtype = "nvs"\nsize = 0x14000\n'
        '[[partitions]]\nname = "otadata"\ntype = "data"\nsubtype = "ota"\nsize = 0x2000\n'
        '[[partitions]]\nname = "ota_0"\ntype = "app"\nsubtype = "ota_0"\noffset = 0x20000\nsize = 0x180000\n'
        '[[partitions]]\nname = "ota_1"\ntype = "app"\nsubtype = "ota_1"\nsize = 0x180000\n'
    )
    from csi_ota.partitions import load_spec

    firmware = make_firmware(tmp_path, GOOD, load_spec(spec).to_csv())
    code, by_check = findings(firmware, "--spec", spec)
    assert code == 0
    assert levels(by_check, "partition-spec") == {"ok"}
    assert "1,572,864 bytes" in by_check["ota-slots"][0][1]


def test_4mb_table_on_8mb_flash_warns(tmp_path: Path):
    config = GOOD.replace("FLASHSIZE_4MB=y", "FLASHSIZE_8MB=y").replace('FLASHSIZE="4MB"', 'FLASHSIZE="8MB"')
    code, by_check = findings(make_firmware(tmp_path, config))
    assert code == 0
    ((level, message),) = by_check["partition-spec"]
    assert level == "warn" and "--flash-size 8MB" in message


def test_table_larger_than_flash_is_an_error(tmp_path: Path):
    config = "\n".join(line for line in GOOD.splitlines() if "FLASHSIZE" not in line) + "\n"
    code, by_check = findings(make_firmware(tmp_path, config))
    assert code == 1
    ((level, message),) = by_check["flash-size"]
    assert level == "error" and "ESP-IDF's default is 2MB" in message and "0x400000" in message


def test_anti_rollback_rules(tmp_path: Path):
    on = GOOD.replace(
        "# CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK is not set", "CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK=y"
    )
    code, by_check = findings(make_firmware(tmp_path / "a", on))
    assert code == 1 and "SECURE_VERSION is not set" in by_check["anti-rollback"][0][1]

    with_version = on + "CONFIG_BOOTLOADER_APP_SECURE_VERSION=2\n"
    code, by_check = findings(make_firmware(tmp_path / "b", with_version))
    assert code == 0 and levels(by_check, "anti-rollback") == {"warn"}
    assert "burns eFuse" in by_check["anti-rollback"][0][1]

    factory = (
        "nvs,data,nvs,0x9000,0x6000\notadata,data,ota,0xf000,0x2000\nfactory,app,factory,0x20000,0x100000\n"
        "ota_0,app,ota_0,0x120000,0x100000\nota_1,app,ota_1,0x220000,0x100000\n"
    )
    code, by_check = findings(make_firmware(tmp_path / "c", with_version, factory))
    assert code == 1
    assert any("without factory/test apps; found factory" in m for _, m in by_check["anti-rollback"])

    no_rollback = with_version.replace("CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y", "")
    code, by_check = findings(make_firmware(tmp_path / "d", no_rollback))
    assert code == 1 and any("rollback is off" in m for _, m in by_check["anti-rollback"])


def test_transport_checks(tmp_path: Path):
    config = GOOD + "CONFIG_ESP_HTTPS_OTA_ALLOW_HTTP=y\n# CONFIG_MBEDTLS_SSL_PROTO_TLS1_3 is not set\n"
    code, by_check = findings(make_firmware(tmp_path / "a", config))
    assert code == 0  # esp_https_ota's option: this firmware does not use esp_https_ota
    assert levels(by_check, "https") == {"ok", "warn"} and levels(by_check, "tls") == {"warn"}
    code, by_check = findings(make_firmware(tmp_path / "b", GOOD + "CONFIG_ESP_TLS_INSECURE=y\n"))
    assert code == 1 and levels(by_check, "https") == {"error"}


def test_stale_sdkconfig_warns(tmp_path: Path):
    firmware = make_firmware(tmp_path, GOOD)
    defaults = tmp_path / "sdkconfig.defaults"
    defaults.write_text(GOOD)
    old = (firmware / "sdkconfig").stat().st_mtime - 100
    os.utime(firmware / "sdkconfig", (old, old))
    code, by_check = findings(firmware)
    assert code == 0
    ((level, message),) = by_check["sdkconfig"]
    assert level == "warn" and "fullclean" in message


def test_defaults_file_is_used_before_the_first_build(tmp_path: Path):
    firmware = make_firmware(tmp_path, None)
    (tmp_path / "sdkconfig.defaults").write_text(GOOD)
    report = run_doctor(firmware)
    assert report.used_defaults and report.ok


def test_project_defaults_is_the_committed_symlink_to_the_root_file():
    link = REPO / "firmware" / "sdkconfig.defaults"
    assert link.is_symlink() and os.readlink(link) == "../sdkconfig.defaults"
    assert link.resolve() == (REPO / "sdkconfig.defaults").resolve()


def test_defaults_are_read_through_the_firmware_symlink(tmp_path: Path):
    firmware = make_firmware(tmp_path, None)
    (tmp_path / "sdkconfig.defaults").write_text(GOOD.replace("ROLLBACK_ENABLE=y", "ROLLBACK_ENABLE=n"))
    (firmware / "sdkconfig.defaults").symlink_to("../sdkconfig.defaults")
    code, by_check = findings(firmware)
    # idf.py save-defconfig through the link changed the one file: doctor sees it.
    assert code == 1 and levels(by_check, "rollback") == {"error"}
    assert "sdkconfig.defaults" not in by_check


def test_separate_project_defaults_that_differ_warn_and_are_what_is_checked(tmp_path: Path):
    firmware = make_firmware(tmp_path, None)
    (tmp_path / "sdkconfig.defaults").write_text(GOOD)
    # `idf.py save-defconfig` without the symlink: a regular file in firmware/ with rollback off.
    (firmware / "sdkconfig.defaults").write_text(GOOD.replace("ROLLBACK_ENABLE=y", "ROLLBACK_ENABLE=n"))
    code, by_check = findings(firmware)
    assert code == 1 and levels(by_check, "rollback") == {"error"}
    ((level, message),) = by_check["sdkconfig.defaults"]
    assert level == "warn" and "differs" in message and "ln -sf ../sdkconfig.defaults" in message


def test_identical_copy_of_the_defaults_warns(tmp_path: Path):
    firmware = make_firmware(tmp_path, None)
    (tmp_path / "sdkconfig.defaults").write_text(GOOD)
    (firmware / "sdkconfig.defaults").write_text(GOOD)
    code, by_check = findings(firmware)
    assert code == 0
    ((level, message),) = by_check["sdkconfig.defaults"]
    assert level == "warn" and "not a symlink" in message


def test_explicit_sdkconfig_and_bad_input(tmp_path: Path):
    firmware = make_firmware(tmp_path, None)
    explicit = tmp_path / "other.sdkconfig"
    explicit.write_text(GOOD)
    assert run_cli("doctor", firmware, "--sdkconfig", explicit)[0] == 0
    code, _, err = run_cli("doctor", firmware)
    assert code == 2 and "no sdkconfig" in err
    code, _, err = run_cli("doctor", tmp_path / "nope")
    assert code == 2 and "does not exist" in err
    explicit.write_text(GOOD + "this is not a config line\n")
    code, out, err = run_cli("doctor", firmware, "--sdkconfig", explicit)
    assert code == 2 and "other.sdkconfig:12" in err and "not an sdkconfig line" in err
    assert "Traceback" not in out + err


def test_parse_sdkconfig():
    values = parse_sdkconfig(
        'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="a \\"q\\""\nCONFIG_D=0x10\n# comment\n'
    )
    assert values == {"A": "y", "B": "n", "C": 'a "q"', "D": "0x10"}
    with pytest.raises(CsiOtaError):
        parse_sdkconfig("A=y\n")


@pytest.mark.skipif(
    not ESP_IDF_MIRROR.is_dir() or shutil.which("git") is None, reason="needs the ESP-IDF source"
)
def test_every_option_in_sdkconfig_defaults_exists_in_esp_idf():
    names = sorted(
        set(re.findall(r"(?<![A-Z_])CONFIG_([A-Z0-9_]+)", (REPO / "sdkconfig.defaults").read_text()))
    )
    project_options = REPO / "firmware" / "main" / "Kconfig.projbuild"
    project = project_options.read_text() if project_options.is_file() else ""
    wanted = [n for n in names if not re.search(rf"^\s*(menu)?config {n}\b", project, re.M)]
    found = subprocess.run(
        [
            "git",
            "-C",
            str(ESP_IDF_MIRROR),
            "grep",
            "-h",
            "-E",
            rf"^\s*(menu)?config ({'|'.join(wanted)})\s*$",
            "HEAD",
            "--",
            "*Kconfig*",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    defined = {line.split()[-1] for line in found.stdout.splitlines()}
    assert set(wanted) - defined == set(), "not ESP-IDF options"
