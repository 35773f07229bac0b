"""`csi-ota doctor` checks what the firmware really does (issue 12, "From the seed").

It used to say "https ok - OTA only over HTTPS" from CONFIG_ESP_HTTPS_OTA_* (esp_https_ota,
which the firmware never calls) and "OTA configuration OK" with CONFIG_CSI_OTA_TRUSTED_KEYS
empty. Now: empty or malformed trusted keys and the test-only CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP
are errors, http:// built-in URLs are errors (the firmware refuses them), and NVS
encryption is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from csi_ota import keys
from csi_ota.cli import main
from csi_ota.partitions import load_layout

GOOD = """\
CONFIG_IDF_TARGET="esp32s3"
CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y
CONFIG_PARTITION_TABLE_CUSTOM=y
CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"
CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y
CONFIG_COMPILER_OPTIMIZATION_SIZE=y
CONFIG_MBEDTLS_SSL_PROTO_TLS1_3=y
"""
TRUSTED = keys.kconfig_trusted_keys_line([ec.generate_private_key(ec.SECP256R1()).public_key()]) + "\n"


def doctor(tmp_path: Path, sdkconfig: str) -> tuple[int, dict[str, list[tuple[str, str]]]]:
    firmware = tmp_path / "firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    (firmware / "sdkconfig").write_text(sdkconfig)
    (firmware / "partitions.csv").write_text(load_layout("4MB").to_csv())
    runner = CliRunner()
    with runner.isolation() as (out, _err, _):
        code = main(["doctor", str(firmware), "--json"])
    by_check: dict[str, list[tuple[str, str]]] = {}
    for f in json.loads(out.getvalue())["findings"]:
        by_check.setdefault(f["check"], []).append((f["level"], f["message"]))
    return code, by_check


def levels(by_check: dict[str, list[tuple[str, str]]], check: str) -> set[str]:
    return {level for level, _ in by_check.get(check, [])}


def test_empty_trusted_keys_fail(tmp_path: Path) -> None:
    code, by_check = doctor(tmp_path, GOOD + 'CONFIG_CSI_OTA_TRUSTED_KEYS=""\n')
    assert code == 1
    ((level, message),) = by_check["trusted-keys"]
    assert level == "error" and "refuses every manifest" in message


def test_malformed_trusted_keys_fail_and_good_ones_pass(tmp_path: Path) -> None:
    bad = TRUSTED.replace(":04", ":05", 1)  # not a point on P-256 / wrong key id
    code, by_check = doctor(tmp_path / "bad", GOOD + bad)
    assert code == 1 and levels(by_check, "trusted-keys") == {"error"}
    code, by_check = doctor(tmp_path / "good", GOOD + TRUSTED)
    assert code == 0 and levels(by_check, "trusted-keys") == {"ok"}


def test_plain_http_is_judged_by_the_firmwares_own_options(tmp_path: Path) -> None:
    # The test-only option that makes the OTA client accept http:// and send its token over it.
    code, by_check = doctor(
        tmp_path / "a", GOOD + TRUSTED + "CONFIG_CSI_OTA_TEST_HOOKS=y\nCONFIG_CSI_OTA_ALLOW_PLAIN_HTTP=y\n"
    )
    assert code == 1
    assert any(level == "error" and "CSI_OTA_ALLOW_PLAIN_HTTP" in m for level, m in by_check["https"])
    assert levels(by_check, "test-hooks") == {"warn"}
    # A built-in http:// check URL: the firmware would refuse it and never check.
    code, by_check = doctor(
        tmp_path / "b",
        GOOD + TRUSTED + 'CONFIG_CSI_OTA_VERSION_CHECK_URL="http://ota.local:8080/api/ota/version"\n',
    )
    assert code == 1 and any("CSI_OTA_VERSION_CHECK_URL=http://" in m for _, m in by_check["https"])
    # esp_https_ota's option is not what decides: a warning that says so, not "OTA only over HTTPS".
    code, by_check = doctor(tmp_path / "c", GOOD + TRUSTED + "CONFIG_ESP_HTTPS_OTA_ALLOW_HTTP=y\n")
    assert code == 0
    assert any(level == "warn" and "does not use" in m for level, m in by_check["https"])
    assert not any("OTA only over HTTPS" in m for _, m in by_check["https"])


def test_nvs_encryption_is_reported(tmp_path: Path) -> None:
    code, by_check = doctor(tmp_path / "off", GOOD + TRUSTED)
    assert code == 0
    ((level, message),) = by_check["nvs-encryption"]
    assert level == "warn" and "plain NVS" in message
    hmac = "CONFIG_NVS_ENCRYPTION=y\nCONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y\n"
    code, by_check = doctor(tmp_path / "hmac", GOOD + TRUSTED + hmac + "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=3\n")
    assert code == 0
    ((level, message),) = by_check["nvs-encryption"]
    assert level == "ok" and "BLOCK_KEY3" in message
    code, by_check = doctor(
        tmp_path / "nokey", GOOD + TRUSTED + hmac + "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=-1\n"
    )
    assert code == 1 and levels(by_check, "nvs-encryption") == {"error"}
    flash_enc = "CONFIG_NVS_ENCRYPTION=y\nCONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y\n"
    code, by_check = doctor(tmp_path / "fe", GOOD + TRUSTED + flash_enc)
    assert code == 1 and any("nvs_keys partition" in m for _, m in by_check["nvs-encryption"])
