"""`csi-ota doctor`'s checks of what the firmware itself does for security (docs/security.md).

The OTA client is the portable core over esp_http_client; it never calls esp_https_ota, so
CONFIG_ESP_HTTPS_OTA_* change nothing. What does: CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP (test images
only), the built-in URLs, CONFIG_CSI_OTA_TRUSTED_KEYS, esp-tls verification, NVS encryption.
"""

from __future__ import annotations

from csi_ota.doctor import ERROR, OK, WARN, Finding, SdkConfig
from csi_ota.errors import CsiOtaError
from csi_ota.keys import parse_trusted_keys
from csi_ota.partitions import Layout

MAX_TRUSTED_KEYS = 4  # OTA_AGENT_MAX_TRUSTED_KEYS (firmware/components/ota_core/include/ota_agent.h)
EFUSE_KEY_BLOCKS = 6  # BLOCK_KEY0..5 on the ESP32-S3


def check_transport(cfg: SdkConfig) -> list[Finding]:
    """What the firmware's own OTA client does (ota_core over esp_http_client; it never calls
    esp_https_ota, so CONFIG_ESP_HTTPS_OTA_* change nothing)."""
    out = []
    if cfg.enabled("CSI_OTA_ALLOW_PLAIN_HTTP"):
        out.append(
            Finding(
                "https",
                ERROR,
                "CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP=y: the OTA client accepts http:// URLs and sends the device "
                "token over them - test images only",
            )
        )
    else:
        urls = {name: cfg.get(name) for name in ("CSI_OTA_VERSION_CHECK_URL", "CSI_OTA_UPDATE_URL")}
        if cfg.enabled("CSI_OTA_PUBLISH_HTTP"):
            urls["CSI_OTA_DATA_URL"] = cfg.get("CSI_OTA_DATA_URL")
        plain = [f"CONFIG_{n}={v}" for n, v in urls.items() if v.startswith("http://")]
        if plain:
            out.append(
                Finding(
                    "https",
                    ERROR,
                    f"{', '.join(plain)}: the firmware refuses http:// (https only); the device would never "
                    "check for updates - use https:// (or provision the URLs)",
                )
            )
    for name in ("ESP_TLS_INSECURE", "ESP_TLS_SKIP_SERVER_CERT_VERIFY"):
        if cfg.enabled(name):
            out.append(Finding("https", ERROR, f"CONFIG_{name}=y: any server could hand the device firmware"))
    if not out:
        out.append(
            Finding(
                "https",
                OK,
                "the OTA client refuses http:// (CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP off), verifies the server "
                "certificate and sends its token only to the controller's origin",
            )
        )
    if cfg.enabled("ESP_HTTPS_OTA_ALLOW_HTTP"):
        out.append(
            Finding(
                "https",
                WARN,
                "CONFIG_ESP_HTTPS_OTA_ALLOW_HTTP=y is set but governs esp_https_ota, which this firmware does "
                "not use; drop it (CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP is the option that matters)",
            )
        )
    if cfg.enabled("CSI_OTA_TEST_HOOKS"):
        out.append(
            Finding(
                "test-hooks",
                WARN,
                "CONFIG_CSI_OTA_TEST_HOOKS=y: a test image (console `selftest fail-next`); not for production",
            )
        )
    if cfg.enabled("MBEDTLS_SSL_PROTO_TLS1_3"):
        out.append(Finding("tls", OK, "TLS 1.3 enabled"))
    else:
        out.append(
            Finding(
                "tls",
                WARN,
                "TLS 1.3 is off (CONFIG_MBEDTLS_SSL_PROTO_TLS1_3); the deployment guide requires TLS 1.3",
            )
        )
    return out


def check_trusted_keys(cfg: SdkConfig) -> list[Finding]:
    value = cfg.get("CSI_OTA_TRUSTED_KEYS").strip()
    if not value:
        return [
            Finding(
                "trusted-keys",
                ERROR,
                "CONFIG_CSI_OTA_TRUSTED_KEYS is empty: the device refuses every manifest (manifest_key), so it "
                "can never update; paste `csi-ota keys show-public KEY.pub.pem --format kconfig`",
            )
        ]
    try:
        keys = parse_trusted_keys(value)
    except CsiOtaError as exc:
        return [Finding("trusted-keys", ERROR, f"CONFIG_CSI_OTA_TRUSTED_KEYS: {exc.message}")]
    if len(keys) > MAX_TRUSTED_KEYS:
        return [
            Finding(
                "trusted-keys",
                ERROR,
                f"CONFIG_CSI_OTA_TRUSTED_KEYS holds {len(keys)} keys; the firmware reads at most {MAX_TRUSTED_KEYS}",
            )
        ]
    return [Finding("trusted-keys", OK, f"{len(keys)} trusted release key(s): {', '.join(keys)}")]


def check_nvs_encryption(cfg: SdkConfig, layout: Layout | None) -> list[Finding]:
    """The device token and CA live in NVS (docs/security.md: NVS encryption)."""
    if not cfg.enabled("NVS_ENCRYPTION"):
        return [
            Finding(
                "nvs-encryption",
                WARN,
                "CONFIG_NVS_ENCRYPTION is off: the device token, Wi-Fi password and CA sit in plain NVS, readable "
                "by anyone with the board; see `csi-ota provision --encrypt` (HMAC scheme)",
            )
        ]
    if cfg.enabled("NVS_SEC_KEY_PROTECT_USING_HMAC"):
        key_id = cfg.get("NVS_SEC_HMAC_EFUSE_KEY_ID")
        if key_id not in {str(n) for n in range(EFUSE_KEY_BLOCKS)}:
            return [
                Finding(
                    "nvs-encryption",
                    ERROR,
                    f"NVS encryption (HMAC scheme) with CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID={key_id}: set the eFuse "
                    "key block (0-5) that holds the key `csi-ota provision --encrypt` made",
                )
            ]
        return [
            Finding(
                "nvs-encryption",
                OK,
                f"NVS encrypted, keys derived from the HMAC key in eFuse BLOCK_KEY{key_id}: burn the key of "
                "`csi-ota provision --encrypt` there before the first boot, or the device burns a random one "
                "and cannot read the image",
            )
        ]
    if cfg.enabled("NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"):
        has_keys = layout is not None and any(e.name == "nvs_keys" for e in layout.entries)
        if not cfg.enabled("SECURE_FLASH_ENC_ENABLED") or not has_keys:
            return [
                Finding(
                    "nvs-encryption",
                    ERROR,
                    "NVS encryption with the flash-encryption scheme needs CONFIG_SECURE_FLASH_ENC_ENABLED and an "
                    "nvs_keys partition; on the ESP32-S3 prefer CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC",
                )
            ]
        return [
            Finding("nvs-encryption", OK, "NVS encrypted, keys in the flash-encrypted nvs_keys partition")
        ]
    return [
        Finding(
            "nvs-encryption",
            WARN,
            "CONFIG_NVS_ENCRYPTION=y without a key protection scheme csi-ota knows (HMAC or flash encryption)",
        )
    ]
