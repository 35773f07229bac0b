"""csi-ota provision: the seed's ota_deployment_config_t as an NVS image, read back field by field."""

from __future__ import annotations

import json
import re
import string
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from csi_ota import certs, provision
from csi_ota.cli import main
from csi_ota.errors import CsiOtaError


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


BASE_ARGS = (
    "--device-id",
    "csi_sensor_001",
    "--auth-token",
    "device_specific_token_here",
    "--update-url",
    "https://ota-controller.local:8080/firmware/latest",
    "--version-check-url",
    "https://ota-controller.local:8080/version",
)


@pytest.fixture(scope="module")
def ca_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    return certs.create_ca(directory).cert


def test_every_field_round_trips_through_the_nvs_image(tmp_path: Path, ca_cert: Path) -> None:
    out = tmp_path / "nvs.bin"
    code, stdout, err = run_cli(
        "provision",
        *BASE_ARGS,
        "--check-interval-sec",
        600,
        "--no-auto-update",
        "--ca-cert",
        ca_cert,
        "--wifi-ssid",
        "lab net",
        "--wifi-password",
        "correct horse",
        "--mqtt-uri",
        "mqtt://127.0.0.1:1883",
        "--data-url",
        "http://127.0.0.1:3000/api/csi/data",
        "--out",
        out,
        "--json",
    )
    assert code == 0, err
    data = out.read_bytes()
    assert len(data) == 0x14000 == 81920
    entries = provision.read_nvs_image(data)
    assert entries == {
        "csi_ota": {
            "update_url": "https://ota-controller.local:8080/firmware/latest",
            "version_url": "https://ota-controller.local:8080/version",
            "check_int_sec": 600,
            "auto_update": 0,
            "device_id": "csi_sensor_001",
            "auth_token": "device_specific_token_here",
            "ca_cert": ca_cert.read_text(),
            "wifi_ssid": "lab net",
            "wifi_pass": "correct horse",
            "mqtt_uri": "mqtt://127.0.0.1:1883",
            "data_url": "http://127.0.0.1:3000/api/csi/data",
        }
    }
    report = json.loads(stdout)
    assert report["size"] == 81920 and report["namespace"] == "csi_ota"
    assert report["flash_offset"] == 0x9000
    assert report["config"]["device_id"] == "csi_sensor_001"
    assert report["nvs_keys"]["version_check_url"] == "version_url"


def test_defaults_and_show(tmp_path: Path) -> None:
    out = tmp_path / "nvs.bin"
    code, _, err = run_cli("provision", *BASE_ARGS, "--out", out)
    assert code == 0, err
    config = provision.config_from_nvs(out.read_bytes())
    assert config.check_interval_sec == 3600 and config.auto_update_enabled is True and config.ca_cert is None
    assert config.wifi_ssid is None and config.mqtt_uri is None
    assert set(provision.read_nvs_image(out.read_bytes())["csi_ota"]) == {
        "update_url",
        "version_url",
        "check_int_sec",
        "auto_update",
        "device_id",
        "auth_token",
    }
    code, stdout, _ = run_cli("provision", "show", out, "--json")
    assert code == 0
    shown = json.loads(stdout)["config"]
    assert shown["update_url"] == "https://ota-controller.local:8080/firmware/latest"
    assert shown["auto_update_enabled"] is True
    code, stdout, _ = run_cli("provision", "show", out)
    assert code == 0
    assert "csi_sensor_001" in stdout and "device_specific_token_here" not in stdout  # token masked


def test_the_nvs_layout_follows_esp_idf_format(tmp_path: Path) -> None:
    data = provision.build_nvs_image(
        provision.ProvisionConfig("http://a/b", "http://a/v", "dev-1", "t"), size_bytes=0x3000
    )
    assert len(data) == 0x3000
    state, seq, version = struct.unpack_from("<IIB", data, 0)
    assert state == 0xFFFFFFFE and seq == 0 and version == 0xFE  # active page, NVS v2
    assert struct.unpack_from("<I", data, 28)[0] == zlib.crc32(data[4:28], 0xFFFFFFFF)
    # First entry: namespace "csi_ota" -> index 1 in namespace 0.
    entry = data[64:96]
    assert entry[0] == 0 and entry[1] == 0x01 and entry[8:16] == b"csi_ota\x00" and entry[24] == 1
    assert data[0x2000:] == b"\xff" * 0x1000  # the spare page NVS needs stays erased


@pytest.mark.parametrize(
    ("flag", "ok_value", "bad_value", "message"),
    [
        ("--update-url", "https://h/" + "u" * 245, "https://h/" + "u" * 246, "update_url is 256 bytes"),
        (
            "--version-check-url",
            "http://h/" + "v" * 246,
            "http://h/" + "v" * 247,
            "version_check_url is 256 bytes",
        ),
        ("--device-id", "d" * 31, "d" * 32, "device_id is 32 bytes; it must be shorter than 32"),
        ("--auth-token", "t" * 127, "t" * 128, "auth_token is 128 bytes; it must be shorter than 128"),
    ],
)
def test_field_limits_include_the_terminator_and_never_truncate(
    tmp_path: Path, flag: str, ok_value: str, bad_value: str, message: str
) -> None:
    args = list(BASE_ARGS)
    index = args.index(flag) + 1
    ok_out = tmp_path / "ok.bin"
    args[index] = ok_value
    code, _, err = run_cli("provision", *args, "--out", ok_out)
    assert code == 0, err
    stored = provision.read_nvs_image(ok_out.read_bytes())["csi_ota"]
    assert ok_value in stored.values()

    bad_out = tmp_path / "bad.bin"
    bad_out.write_bytes(b"previous image")
    args[index] = bad_value
    code, _, err = run_cli("provision", *args, "--out", bad_out)
    assert code == 2
    assert message in err and "never truncated" in err
    assert bad_out.read_bytes() == b"previous image"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--device-id", "csi sensor", "may only use A-Z a-z 0-9 _ -"),
        ("--device-id", "capteur_é", "may only use A-Z a-z 0-9 _ -"),
        ("--update-url", "ftp://x/y", "must be an http:// or https:// URL"),
        ("--version-check-url", "https://x/ y", "must be an http:// or https:// URL"),
        ("--auth-token", "two words", "printable ASCII without spaces"),
        ("--check-interval-sec", "59", "59 is not in the range 60<=x<=604800"),
        ("--check-interval-sec", "604801", "604801 is not in the range"),
        ("--wifi-ssid", "s" * 33, "wifi_ssid is 33 bytes; it must be shorter than 33"),
        ("--wifi-password", "short", "8-63 printable ASCII"),
        ("--mqtt-uri", "http://broker", "must be an mqtt://"),
        ("--data-url", "http://h/" + "d" * 119, "data_url is 128 bytes"),
    ],
)
def test_bad_values_are_rejected(tmp_path: Path, flag: str, value: str, message: str) -> None:
    args = list(BASE_ARGS)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    out = tmp_path / "nvs.bin"
    code, _, err = run_cli("provision", *args, "--out", out)
    assert code == 2
    assert message in err
    assert not out.exists()


def test_size_follows_the_layouts_nvs_partition(tmp_path: Path) -> None:
    table = tmp_path / "small.csv"
    table.write_text(
        "nvs, data, nvs, 0x9000, 0x6000,\n"
        "otadata, data, ota, 0xf000, 0x2000,\n"
        "phy_init, data, phy, 0x11000, 0x1000,\n"
        "ota_0, app, ota_0, 0x20000, 0x140000,\n"
        "ota_1, app, ota_1, 0x160000, 0x140000,\n"
    )
    out = tmp_path / "nvs.bin"
    code, stdout, err = run_cli("provision", *BASE_ARGS, "--out", out, "--layout", table, "--json")
    assert code == 0, err
    assert out.stat().st_size == 0x6000 and json.loads(stdout)["size"] == 0x6000
    code, _, err = run_cli("provision", *BASE_ARGS, "--out", out, "--layout", table, "--size", "0x3000")
    assert code == 0, err
    assert out.stat().st_size == 0x3000
    assert provision.config_from_nvs(out.read_bytes()).device_id == "csi_sensor_001"


def test_library_limits_match_the_firmware() -> None:
    config = provision.ProvisionConfig("http://a/b", "http://a/v", "dev", "tok", check_interval_sec=30)
    with pytest.raises(CsiOtaError, match="outside 60..604800"):
        provision.build_nvs_image(config)
    assert provision.PROVISION_FIELDS["device_id"].max_bytes == 32
    assert all(len(f.nvs_key) <= 15 for f in provision.PROVISION_FIELDS.values())


def test_the_firmware_reads_the_keys_the_provisioning_image_writes() -> None:
    """ota_provisioning_keys.h (device and virtual device) names exactly PROVISION_FIELDS' NVS keys."""
    header = (
        Path(__file__).resolve().parents[1] / "firmware/components/ota_core/include/ota_provisioning_keys.h"
    )
    text = header.read_text()
    keys = set(re.findall(r'^#define OTA_PROVISIONING_KEY_\w+\s+"(\w+)"', text, re.MULTILINE))
    assert keys == {f.nvs_key for f in provision.PROVISION_FIELDS.values()}
    assert f'#define OTA_PROVISIONING_NAMESPACE "{provision.NVS_NAMESPACE}"' in text


def test_bad_size_ca_and_missing_options(tmp_path: Path) -> None:
    out = tmp_path / "nvs.bin"
    code, _, err = run_cli("provision", *BASE_ARGS, "--out", out, "--size", "0x14001")
    assert code == 2 and "multiple of 0x1000" in err
    code, _, err = run_cli("provision", *BASE_ARGS, "--out", out, "--size", "lots")
    assert code == 2 and "not a number" in err
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("hello\n")
    code, _, err = run_cli("provision", *BASE_ARGS, "--out", out, "--ca-cert", not_pem)
    assert code == 2 and "not a PEM certificate" in err
    code, _, err = run_cli("provision", "--device-id", "x", "--out", out)
    assert code == 2 and "--auth-token" in err and "--update-url" in err
    assert not out.exists()


def test_reader_rejects_corrupted_images(tmp_path: Path) -> None:
    data = bytearray(
        provision.build_nvs_image(provision.ProvisionConfig("http://a/b", "http://a/v", "dev", "tok"))
    )
    flipped_entry = bytearray(data)
    flipped_entry[64 + 32 + 10] ^= 1  # a key byte of the second entry
    with pytest.raises(CsiOtaError, match="entry CRC mismatch"):
        provision.read_nvs_image(bytes(flipped_entry))
    flipped_header = bytearray(data)
    flipped_header[5] ^= 1
    with pytest.raises(CsiOtaError, match="header CRC mismatch"):
        provision.read_nvs_image(bytes(flipped_header))
    with pytest.raises(CsiOtaError, match="no namespace 'csi_ota'"):
        provision.config_from_nvs(b"\xff" * 0x3000)


URL_PATH = st.text(alphabet=string.ascii_letters + string.digits + "/-._~%?=&", max_size=230)


@settings(max_examples=25, deadline=None)
@given(
    device_id=st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=31),
    token=st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=127),
    update_path=URL_PATH,
    version_path=URL_PATH,
    interval=st.integers(min_value=60, max_value=604_800),
    auto=st.booleans(),
)
def test_any_valid_config_round_trips(
    device_id: str, token: str, update_path: str, version_path: str, interval: int, auto: bool
) -> None:
    config = provision.ProvisionConfig(
        update_url="https://ota.local:8080/" + update_path,
        version_check_url="http://10.0.0.1/" + version_path,
        device_id=device_id,
        auth_token=token,
        check_interval_sec=interval,
        auto_update_enabled=auto,
    )
    assert provision.config_from_nvs(provision.build_nvs_image(config, size_bytes=0x3000)) == config
