"""Writes budget_csi_sensor.map: a hand-made GNU ld map of an ESP32-S3 CSI sensor app.

The layout follows what `idf.py build` links for an ESP32-S3 (xtensa-esp-elf ld,
ESP-IDF v6 memory.ld regions, IDF_TARGET_ESP32S3 hint symbol), with made-up but
plausible per-archive sizes for a Wi-Fi CSI app with MQTT and HTTPS OTA.
Regenerate with:  python tests/data/budget_make_map.py
"""

from __future__ import annotations

from pathlib import Path

IDF = "/opt/esp/idf/components"
TOOLCHAIN = "/opt/esp/tools/xtensa-esp-elf/esp-14.2.0_20251107/xtensa-esp-elf/xtensa-esp-elf/lib/esp32s3"

# (output section, start address, [(input section, archive(object), size)])
SECTIONS = [
    (
        ".iram0.vectors",
        0x40374000,
        [(".exception_vectors.text", "esp-idf/xtensa/libxtensa.a(xtensa_vectors.S.obj)", 0x403)],
    ),
    (
        ".iram0.text",
        0x40374404,
        [
            (".iram1.0", "esp-idf/freertos/libfreertos.a(port.c.obj)", 0x2F10),
            (".iram1.1", "esp-idf/freertos/libfreertos.a(tasks.c.obj)", 0x4A20),
            (".iram1.2", "esp-idf/esp_system/libesp_system.a(cpu_start.c.obj)", 0x1840),
            (".iram1.3", "esp-idf/spi_flash/libspi_flash.a(spi_flash_os_func_app.c.obj)", 0x1E30),
            (".iram1.4", "esp-idf/hal/libhal.a(spi_flash_hal_iram.c.obj)", 0x2260),
            (".iram1.5", f"{IDF}/esp_wifi/lib/esp32s3/libpp.a(pp.o)", 0x6A80),
            (".iram1.6", f"{IDF}/esp_wifi/lib/esp32s3/libnet80211.a(ieee80211_output.o)", 0x2C40),
            (".iram1.7", f"{IDF}/esp_phy/lib/esp32s3/libphy.a(phy_chip_v7.o)", 0x1980),
            (".iram1.8", "esp-idf/main/libmain.a(csi_capture.c.obj)", 0x0C60),
            (".text.memcpy", f"{TOOLCHAIN}/no-rtti/libc.a(libc_a-memcpy.o)", 0x02B0),
        ],
    ),
    (
        ".dram0.data",
        0x3FC98000,
        [
            (".data.0", "esp-idf/freertos/libfreertos.a(tasks.c.obj)", 0x0180),
            (".data.1", f"{IDF}/esp_wifi/lib/esp32s3/libnet80211.a(ieee80211.o)", 0x0A40),
            (".data.2", "esp-idf/lwip/liblwip.a(tcp.c.obj)", 0x0120),
            (".data.3", "esp-idf/main/libmain.a(csi_main.c.obj)", 0x0040),
            (".data.4", "esp-idf/mbedtls/mbedtls/library/libmbedcrypto.a(platform.c.obj)", 0x0020),
        ],
    ),
    (
        ".dram0.bss",
        0x3FC98DC0,
        [
            (".bss.0", "esp-idf/freertos/libfreertos.a(tasks.c.obj)", 0x0500),
            (".bss.1", f"{IDF}/esp_wifi/lib/esp32s3/libnet80211.a(ieee80211.o)", 0x2A00),
            (".bss.2", "esp-idf/lwip/liblwip.a(memp.c.obj)", 0x3C00),
            (".bss.3", "esp-idf/main/libmain.a(csi_main.c.obj)", 0x1800),
        ],
    ),
    (
        ".flash.appdesc",
        0x3C000020,
        [(".rodata_desc", "esp-idf/esp_app_format/libesp_app_format.a(esp_app_desc.c.obj)", 0x100)],
    ),
    (
        ".flash.rodata",
        0x3C000120,
        [
            (".rodata.0", "esp-idf/main/libmain.a(csi_main.c.obj)", 0x1A40),
            (".rodata.1", "esp-idf/main/libmain.a(ota_client.c.obj)", 0x0E80),
            (".rodata.2", "esp-idf/mbedtls/mbedtls/library/libmbedcrypto.a(ecp_curves.c.obj)", 0x7C00),
            (".rodata.3", "esp-idf/mbedtls/mbedtls/library/libmbedtls.a(ssl_ciphersuites.c.obj)", 0x2400),
            (".rodata.4", f"{IDF}/esp_wifi/lib/esp32s3/libnet80211.a(ieee80211_ioctl.o)", 0x5600),
            (".rodata.5", f"{IDF}/esp_phy/lib/esp32s3/libphy.a(phy_chip_v7.o)", 0x3800),
            (".rodata.6", "esp-idf/lwip/liblwip.a(ip4.c.obj)", 0x1200),
            (".rodata.7", "esp-idf/mqtt/libmqtt.a(mqtt_client.c.obj)", 0x0F00),
            (".rodata.8", f"{TOOLCHAIN}/no-rtti/libc.a(libc_a-vfprintf.o)", 0x0A80),
            (".rodata.9", "esp-idf/esp_https_ota/libesp_https_ota.a(esp_https_ota.c.obj)", 0x0600),
        ],
    ),
    (
        ".flash.text",
        0x42000020,
        [
            (".text.0", "esp-idf/main/libmain.a(csi_main.c.obj)", 0x6200),
            (".text.1", "esp-idf/main/libmain.a(ota_client.c.obj)", 0x3A00),
            (".text.2", "esp-idf/main/libmain.a(csi_capture.c.obj)", 0x2400),
            (".text.3", f"{IDF}/esp_wifi/lib/esp32s3/libnet80211.a(ieee80211.o)", 0x1E000),
            (".text.4", f"{IDF}/esp_wifi/lib/esp32s3/libpp.a(pp.o)", 0x12000),
            (".text.5", f"{IDF}/esp_wifi/lib/esp32s3/libwpa_supplicant.a(wpa.o)", 0x0C000),
            (".text.6", f"{IDF}/esp_phy/lib/esp32s3/libphy.a(phy_chip_v7.o)", 0x0E000),
            (".text.7", "esp-idf/mbedtls/mbedtls/library/libmbedcrypto.a(bignum.c.obj)", 0x0A400),
            (".text.8", "esp-idf/mbedtls/mbedtls/library/libmbedcrypto.a(ecp.c.obj)", 0x07200),
            (".text.9", "esp-idf/mbedtls/mbedtls/library/libmbedtls.a(ssl_tls.c.obj)", 0x0D800),
            (".text.10", "esp-idf/mbedtls/mbedtls/library/libmbedx509.a(x509_crt.c.obj)", 0x04C00),
            (".text.11", "esp-idf/lwip/liblwip.a(tcp.c.obj)", 0x09800),
            (".text.12", "esp-idf/lwip/liblwip.a(ip4.c.obj)", 0x05400),
            (".text.13", "esp-idf/esp_http_client/libesp_http_client.a(esp_http_client.c.obj)", 0x03800),
            (".text.14", "esp-idf/esp_https_ota/libesp_https_ota.a(esp_https_ota.c.obj)", 0x01C00),
            (".text.15", "esp-idf/app_update/libapp_update.a(esp_ota_ops.c.obj)", 0x01A00),
            (".text.16", "esp-idf/mqtt/libmqtt.a(mqtt_client.c.obj)", 0x04800),
            (".text.17", "esp-idf/nvs_flash/libnvs_flash.a(nvs_storage.cpp.obj)", 0x05000),
            (".text.18", "esp-idf/spiffs/libspiffs.a(spiffs_nucleus.c.obj)", 0x03C00),
            (".text.19", "esp-idf/esp_system/libesp_system.a(panic.c.obj)", 0x01200),
            (".text.20", f"{TOOLCHAIN}/no-rtti/libc.a(libc_a-vfprintf.o)", 0x02C00),
        ],
    ),
]

MEMORY = """Memory Configuration

Name             Origin             Length             Attributes
iram0_0_seg      0x0000000040370000 0x0000000000060000 xr
iram0_2_seg      0x0000000042000020 0x0000000001ffffe0 xr
dram0_0_seg      0x000000003fc88000 0x0000000000050000 rw
drom0_0_seg      0x000000003c000020 0x0000000001ffffe0 r
rtc_iram_seg     0x00000000600fe000 0x0000000000002000 xrw
rtc_slow_seg     0x0000000050000000 0x0000000000002000 rw
*default*        0x0000000000000000 0xffffffffffffffff
"""


def render() -> str:
    archives = sorted({obj.split("(")[0] for _, _, rows in SECTIONS for _, obj, _ in rows})
    out = [
        "Archive member included to satisfy reference by file (symbol)",
        "",
        "esp-idf/esp_system/libesp_system.a(cpu_start.c.obj)",
        "                              (call_start_cpu0)",
        "",
        "Discarded input sections",
        "",
        " .text          0x0000000000000000        0x0 esp-idf/main/libmain.a(csi_main.c.obj)",
        "",
        MEMORY,
        "Linker script and memory map",
        "",
        *[f"LOAD {a}" for a in archives],
        "                0x0000000000000000                IDF_TARGET_ESP32S3 = 0x0",
        "",
    ]
    for name, start, rows in SECTIONS:
        total = sum(size for _, _, size in rows)
        out.append(f"{name:<15} 0x{start:016x} {total:#10x}")
        out.append(f" *({name.replace('.', '', 1)} {name.replace('.', '', 1)}.*)")
        addr = start
        for input_name, obj, size in rows:
            out.append(f" {input_name}")
            out.append(f"                0x{addr:016x} {size:#10x} {obj}")
            addr += size
        out.append("")
    out += ["Cross Reference Table", "", "Symbol                                            File", ""]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("budget_csi_sensor.map")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
