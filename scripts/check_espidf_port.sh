#!/usr/bin/env bash
# check_espidf_port.sh — developer tool (not run in CI): best-effort compile check of the
# ESP-IDF port (firmware/components/ota_port_espidf) and the app (firmware/main) with the
# host gcc against the real ESP-IDF v6 headers, for the ESP32-S3.
#
# No Xtensa toolchain exists here, so this is `gcc -fsyntax-only` with:
#   - headers from the bare ESP-IDF mirror (git archive of *.h), espressif/esp-mqtt and
#     TF-PSA-Crypto (ESP-IDF's mbedtls submodule content) when those mirrors exist;
#   - a hand-made sdkconfig.h for esp32s3 (variants: MQTT + test hooks; HTTP + the
#     failing/crashing test images; log v2) so every #if branch of our code is compiled;
#   - Xtensa's integer model: uint32_t/int32_t are `long` there (not `int`), so a shim
#     stdint/inttypes makes -Wformat catch %u/%d used for uint32_t, and esp_log() gets a
#     printf format attribute (ESP-IDF's has none) so ESP_LOGx arguments are checked.
# Flags: ESP-IDF's warning set (-Wall -Wextra), every warning an error.
# It also compiles the portable core (firmware/components/ota_core) under the same integer
# model, and builds and runs the cmocka host tests of the plain-C parts (test_host/).
#
# Reach: the whole app and port parse and type-check against the real v6 headers (FreeRTOS
# xtensa port, esp_wifi, esp_http_client, esp_ota_ops, nvs, console, PSA, mqtt_client.h),
# lwIP and newlib excepted (the host's libc headers stand in). Not covered: code generation,
# linking, the real sdkconfig.h.
#
# Usage: scripts/check_espidf_port.sh [-v]     (exit 0: every file compiled cleanly)
# Env:   ESP_IDF_MIRROR (default /work/.mirror/espressif+esp-idf/repo)
#        MQTT_MIRROR    (default /work/.mirror/espressif+esp-mqtt/repo)
#        PSA_MIRROR     (default /work/.mirror/Mbed-TLS+TF-PSA-Crypto/repo)
#        MBEDTLS_MIRROR (default /work/.mirror/Mbed-TLS+mbedtls/repo)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VERBOSE=${1:-}

ESP_IDF_MIRROR=${ESP_IDF_MIRROR:-/work/.mirror/espressif+esp-idf/repo}
MQTT_MIRROR=${MQTT_MIRROR:-/work/.mirror/espressif+esp-mqtt/repo}
PSA_MIRROR=${PSA_MIRROR:-/work/.mirror/Mbed-TLS+TF-PSA-Crypto/repo}
MBEDTLS_MIRROR=${MBEDTLS_MIRROR:-/work/.mirror/Mbed-TLS+mbedtls/repo}
[ -d "$ESP_IDF_MIRROR" ] || { echo "ESP-IDF mirror not found: $ESP_IDF_MIRROR" >&2; exit 2; }

IDF_COMMIT=$(git -C "$ESP_IDF_MIRROR" rev-parse HEAD)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/csi-ota/espidf-headers-${IDF_COMMIT:0:12}
if [ ! -f "$CACHE/.complete" ]; then
    echo "extracting ESP-IDF headers (${IDF_COMMIT:0:12}) to $CACHE"
    rm -rf "$CACHE" && mkdir -p "$CACHE/idf"
    # git archive complains about blobs the mirror lacks (outside components/): ignored.
    git -C "$ESP_IDF_MIRROR" archive HEAD components 2>/dev/null |
        tar -x -C "$CACHE/idf" --wildcards '*.h' '*.inc' 2>/dev/null || true
    if [ -d "$MQTT_MIRROR" ]; then
        mkdir -p "$CACHE/mqtt"
        git -C "$MQTT_MIRROR" archive HEAD include | tar -x -C "$CACHE/mqtt"
    fi
    if [ -d "$MBEDTLS_MIRROR" ]; then
        mkdir -p "$CACHE/mbedtls"
        git -C "$MBEDTLS_MIRROR" archive HEAD include | tar -x -C "$CACHE/mbedtls"
    fi
    if [ -d "$PSA_MIRROR" ]; then
        mkdir -p "$CACHE/psa"
        git -C "$PSA_MIRROR" archive HEAD include drivers/builtin/include 2>/dev/null |
            tar -x -C "$CACHE/psa" || true
    fi
    touch "$CACHE/.complete"
fi
C=$CACHE/idf/components

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/shim" "$WORK/variant_mqtt" "$WORK/variant_http" "$WORK/variant_log2"

# ---- Xtensa integer model: (u)int32_t are long, PRI*32 use "l" --------------------------
mkdir -p "$WORK/shim/bits"
cat >"$WORK/shim/bits/stdint-intn.h" <<'H'
#pragma once
#include <bits/types.h>
typedef __int8_t int8_t;
typedef __int16_t int16_t;
typedef long int int32_t; /* xtensa-esp-elf: __INT32_TYPE__ is long int */
typedef __int64_t int64_t;
H
cat >"$WORK/shim/bits/stdint-uintn.h" <<'H'
#pragma once
#include <bits/types.h>
typedef __uint8_t uint8_t;
typedef __uint16_t uint16_t;
typedef long unsigned int uint32_t; /* xtensa-esp-elf: __UINT32_TYPE__ is long unsigned int */
typedef __uint64_t uint64_t;
H
cat >"$WORK/shim/inttypes.h" <<'H'
#pragma once
#include_next <inttypes.h>
#undef PRId32
#undef PRIi32
#undef PRIu32
#undef PRIx32
#undef PRIX32
#undef PRIo32
#define PRId32 "ld"
#define PRIi32 "li"
#define PRIu32 "lu"
#define PRIx32 "lx"
#define PRIX32 "lX"
#define PRIo32 "lo"
H
# newlib's reentrancy struct (xtensa_config.h sizes a context area with it).
mkdir -p "$WORK/shim/sys"
cat >"$WORK/shim/sys/reent.h" <<'H'
#pragma once
struct _reent {
    int _errno;
};
extern struct _reent *_impure_ptr;
H
printf '#pragma once\n#include <sys/reent.h>\n' >"$WORK/shim/reent.h"
mkdir -p "$WORK/shim/machine"
printf '#pragma once\n#include <endian.h>\n' >"$WORK/shim/machine/endian.h"
# ESP-IDF's own libc glue headers, without the rest of its newlib platform_include.
for f in esp_newlib.h; do
    [ -f "$C/esp_libc/platform_include/$f" ] && cp "$C/esp_libc/platform_include/$f" "$WORK/shim/"
done
# Forced first: sizes differ from the chip's (long is 64-bit here), so layout asserts are off.
cat >"$WORK/shim/check_prelude.h" <<'H'
#pragma once
#define _Static_assert(...)
#define static_assert(...)
/* newlib's sys/types.h marks that it provides fd_set; glibc's does too, under another name. */
#define _SYS_TYPES_FD_SET 1
H
# Forced last-ish via the app's own includes: esp_log() gets the printf attribute it lacks.
cat >"$WORK/shim/check_log_format.h" <<'H'
#pragma once
#include "esp_log.h"
void esp_log(esp_log_config_t config, const char *tag, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
H

# ---- hand-made sdkconfig.h for esp32s3 (what a default ESP-IDF v6 build sets) ----------
common_sdkconfig() {
    cat <<'H'
#pragma once
#define CONFIG_IDF_TARGET "esp32s3"
#define CONFIG_IDF_TARGET_ESP32S3 1
#define CONFIG_IDF_TARGET_ARCH_XTENSA 1
#define CONFIG_IDF_TARGET_ARCH "xtensa"
#define CONFIG_IDF_FIRMWARE_CHIP_ID 0x0009
#define CONFIG_IDF_INIT_VERSION "6.2.0"
#define CONFIG_SOC_WIFI_SUPPORTED 1
#define CONFIG_ESP_WIFI_ENABLED 1
#define CONFIG_ESP_WIFI_CSI_ENABLED 1
#define CONFIG_ESP_WIFI_STATIC_RX_BUFFER_NUM 10
#define CONFIG_ESP_WIFI_DYNAMIC_RX_BUFFER_NUM 32
#define CONFIG_ESP_WIFI_DYNAMIC_TX_BUFFER 1
#define CONFIG_ESP_WIFI_TX_BUFFER_TYPE 1
#define CONFIG_ESP_WIFI_DYNAMIC_TX_BUFFER_NUM 32
#define CONFIG_ESP_WIFI_STATIC_RX_MGMT_BUFFER 1
#define CONFIG_ESP_WIFI_DYNAMIC_RX_MGMT_BUF 0
#define CONFIG_ESP_WIFI_RX_MGMT_BUF_NUM_DEF 5
#define CONFIG_ESP_WIFI_AMPDU_TX_ENABLED 1
#define CONFIG_ESP_WIFI_TX_BA_WIN 6
#define CONFIG_ESP_WIFI_AMPDU_RX_ENABLED 1
#define CONFIG_ESP_WIFI_RX_BA_WIN 6
#define CONFIG_ESP_WIFI_NVS_ENABLED 1
#define CONFIG_ESP_WIFI_TASK_PINNED_TO_CORE_0 1
#define CONFIG_ESP_WIFI_SOFTAP_BEACON_MAX_LEN 752
#define CONFIG_ESP_WIFI_MGMT_SBUF_NUM 32
#define CONFIG_ESP_WIFI_ESPNOW_MAX_ENCRYPT_NUM 7
#define CONFIG_ESP_WIFI_ENABLE_WPA3_SAE 1
#define CONFIG_ESP_WIFI_SOFTAP_SUPPORT 1
#define CONFIG_ESP_WIFI_IRAM_OPT 1
#define CONFIG_ESP_WIFI_RX_IRAM_OPT 1
#define CONFIG_ESP_WIFI_GMAC_SUPPORT 1
#define CONFIG_ESP_WIFI_TX_HETB_QUEUE_NUM 3
#define CONFIG_ESP_COEX_ENABLED 1
#define CONFIG_FREERTOS_HZ 1000
#define CONFIG_FREERTOS_NUMBER_OF_CORES 2
#define CONFIG_FREERTOS_MAX_TASK_NAME_LEN 16
#define CONFIG_FREERTOS_IDLE_TASK_STACKSIZE 1536
#define CONFIG_FREERTOS_TIMER_TASK_STACK_DEPTH 2048
#define CONFIG_FREERTOS_TIMER_QUEUE_LENGTH 10
#define CONFIG_FREERTOS_TIMER_TASK_PRIORITY 1
#define CONFIG_FREERTOS_TIMER_SERVICE_TASK_CORE_AFFINITY 0x7FFFFFFF
#define CONFIG_FREERTOS_TIMER_SERVICE_TASK_NAME "Tmr Svc"
#define CONFIG_FREERTOS_QUEUE_REGISTRY_SIZE 0
#define CONFIG_FREERTOS_TASK_NOTIFICATION_ARRAY_ENTRIES 1
#define CONFIG_FREERTOS_THREAD_LOCAL_STORAGE_POINTERS 1
#define CONFIG_FREERTOS_CHECK_STACKOVERFLOW_CANARY 1
#define CONFIG_FREERTOS_TICK_SUPPORT_SYSTIMER 1
#define CONFIG_FREERTOS_CORETIMER_SYSTIMER_LVL1 1
#define CONFIG_FREERTOS_SYSTICK_USES_SYSTIMER 1
#define CONFIG_FREERTOS_ISR_STACKSIZE 1536
#define CONFIG_FREERTOS_INTERRUPT_BACKTRACE 1
#define CONFIG_FREERTOS_TLSP_DELETION_CALLBACKS 1
#define CONFIG_FREERTOS_PORT 1
#define CONFIG_FREERTOS_NO_AFFINITY 0x7FFFFFFF
#define CONFIG_FREERTOS_SUPPORT_STATIC_ALLOCATION 1
#define CONFIG_FREERTOS_DEBUG_OCDAWARE 1
#define CONFIG_FREERTOS_ENABLE_TASK_SNAPSHOT 1
#define CONFIG_FREERTOS_PLACE_SNAPSHOT_FUNS_INTO_FLASH 1
#define CONFIG_FREERTOS_NUMBER_OF_CORES 2
#define CONFIG_LOG_DEFAULT_LEVEL_INFO 1
#define CONFIG_LOG_DEFAULT_LEVEL 3
#define CONFIG_LOG_MAXIMUM_EQUALS_DEFAULT 1
#define CONFIG_LOG_MAXIMUM_LEVEL 3
#define CONFIG_LOG_VERSION_1 1
#define CONFIG_LOG_VERSION 1
#define CONFIG_LOG_COLORS 0
#define CONFIG_LOG_TIMESTAMP_SOURCE_RTOS 1
#define CONFIG_LOG_MODE_TEXT_EN 1
#define CONFIG_LOG_MODE_TEXT 1
#define CONFIG_LOG_TAG_LEVEL_IMPL_CACHE_AND_LINKED_LIST 1
#define CONFIG_LOG_TAG_LEVEL_CACHE_BINARY_MIN_HEAP 1
#define CONFIG_LOG_TAG_LEVEL_IMPL_CACHE_SIZE 31
#define CONFIG_LOG_DYNAMIC_LEVEL_CONTROL 1
#define CONFIG_LOG_IN_IRAM 1
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
#define CONFIG_ESP_HTTP_CLIENT_ENABLE_HTTPS 1
#define CONFIG_ESP_HTTP_CLIENT_STRICT_HEADER_BUFFER 1
#define CONFIG_ESP_HTTP_CLIENT_EVENT_POST_TIMEOUT 2000
#define CONFIG_ESP_TLS_USING_MBEDTLS 1
#define CONFIG_MBEDTLS_CERTIFICATE_BUNDLE 1
#define CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_DEFAULT_FULL 1
#define CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_MAX_CERTS 200
#define CONFIG_ESP_CONSOLE_UART_DEFAULT 1
#define CONFIG_ESP_CONSOLE_UART 1
#define CONFIG_ESP_CONSOLE_UART_NUM 0
#define CONFIG_ESP_CONSOLE_SECONDARY_USB_SERIAL_JTAG 1
#define CONFIG_ESP_CONSOLE_UART_BAUDRATE 115200
#define CONFIG_ESP_MAIN_TASK_STACK_SIZE 3584
#define CONFIG_ESP_SYSTEM_EVENT_TASK_STACK_SIZE 2304
#define CONFIG_ESP_TIMER_TASK_STACK_SIZE 3584
#define CONFIG_ESP_TIMER_IMPL_SYSTIMER 1
#define CONFIG_ESP_NETIF_TCPIP_LWIP 1
#define CONFIG_ESP_NETIF_USES_TCPIP_WITH_BSD_API 1
#define CONFIG_LWIP_IPV4 1
#define CONFIG_LWIP_IPV6 1
#define CONFIG_VFS_SUPPORT_IO 1
#define CONFIG_VFS_SUPPORT_SELECT 1
#define CONFIG_LIBC_NEWLIB 1
#define CONFIG_SPI_FLASH_ROM_DRIVER_PATCH 1
#define CONFIG_ESPTOOLPY_FLASHSIZE_4MB 1
#define CONFIG_PARTITION_TABLE_OFFSET 0x8000
#define CONFIG_APP_BUILD_TYPE_APP_2NDBOOT 1
#define CONFIG_APP_BUILD_GENERATE_BINARIES 1
#define CONFIG_APP_BUILD_BOOTLOADER 1
#define CONFIG_NVS_ENCRYPTION 0
#define CONFIG_MQTT_PROTOCOL_311 1
#define CONFIG_MQTT_TRANSPORT_SSL 1
#define CONFIG_MQTT_TRANSPORT_WEBSOCKET 1
#define CONFIG_MQTT_TRANSPORT_WEBSOCKET_SECURE 1
/* csi-ota (firmware/main/Kconfig.projbuild) */
#define CONFIG_CSI_OTA_WIFI_SSID "csi-lab"
#define CONFIG_CSI_OTA_WIFI_PASSWORD ""
#define CONFIG_CSI_OTA_DEVICE_ID ""
#define CONFIG_CSI_OTA_VERSION_CHECK_URL "https://ota-controller.local:8080/api/ota/version"
#define CONFIG_CSI_OTA_UPDATE_URL "https://ota-controller.local:8080/firmware/latest"
#define CONFIG_CSI_OTA_CHECK_INTERVAL_SEC 3600
#define CONFIG_CSI_OTA_AUTO_UPDATE 1
#define CONFIG_CSI_OTA_AUTH_TOKEN ""
#define CONFIG_CSI_OTA_TRUSTED_KEYS ""
#define CONFIG_CSI_OTA_HEARTBEAT_INTERVAL_SEC 60
#define CONFIG_CSI_OTA_SELFTEST_TIMEOUT_MS 30000
#define CONFIG_CSI_OTA_RETRY_COUNT 3
#define CONFIG_CSI_OTA_HTTP_TIMEOUT_MS 15000
#define CONFIG_CSI_OTA_BACKOFF_INITIAL_MS 2000
#define CONFIG_CSI_OTA_BACKOFF_MAX_MS 300000
#define CONFIG_CSI_OTA_DOWNLOAD_CHUNK_BYTES 4096
#define CONFIG_CSI_OTA_PERSIST_INTERVAL_BYTES 65536
H
}
{ common_sdkconfig; cat <<'H'
#define CONFIG_CSI_OTA_PUBLISH_MQTT 1
#define CONFIG_CSI_OTA_MQTT_URI "mqtt://ota-controller.local:1883"
#define CONFIG_CSI_OTA_TEST_HOOKS 1
H
} >"$WORK/variant_mqtt/sdkconfig.h"
{ common_sdkconfig; cat <<'H'
#define CONFIG_CSI_OTA_PUBLISH_HTTP 1
#define CONFIG_CSI_OTA_DATA_URL "http://ota-controller.local:3000"
#define CONFIG_CSI_OTA_CSI_BATCH_FRAMES 8
#define CONFIG_CSI_OTA_TEST_HOOKS 1
#define CONFIG_CSI_OTA_TEST_FAIL_SELFTEST 1
#define CONFIG_CSI_OTA_TEST_CRASH_AT_BOOT 1
H
} >"$WORK/variant_http/sdkconfig.h"
# Log v2 (esp_log formats the prefix itself): the port's ota_port_log must build either way.
sed -e 's/^#define CONFIG_LOG_VERSION_1 1$/#define CONFIG_LOG_VERSION_2 1/' \
    -e 's/^#define CONFIG_LOG_VERSION 1$/#define CONFIG_LOG_VERSION 2/' \
    "$WORK/variant_mqtt/sdkconfig.h" >"$WORK/variant_log2/sdkconfig.h"

# ---- include paths: what idf_component_register would give these components ------------
INCLUDES=()
add() { for d in "$@"; do [ -d "$d" ] && INCLUDES+=("-I$d"); done; return 0; }
add "$ROOT/firmware/components/ota_core/include" "$ROOT/firmware/components/ota_port_espidf/include" \
    "$ROOT/firmware/components/ota_port_espidf" "$ROOT/firmware/main"
for comp in app_update bootloader_support esp_app_format esp_bootloader_format esp_partition \
    esp_http_client esp-tls esp_timer esp_system esp_hw_support esp_common log heap \
    nvs_flash esp_event esp_netif esp_wifi esp_phy esp_coex console esp_rom spi_flash \
    partition_table efuse esp_security esp_mm esp_driver_gpio esp_driver_uart esp_hal_uart \
    esp_hal_gpio esp_pm esp_ringbuf vfs esp_stdio tcp_transport esp_hal_mspi \
    esp_hal_clock esp_hal_security esp_hal_systimer esp_hal_wdt esp_blockdev; do
    add "$C/$comp/include" "$C/$comp/esp32s3/include" "$C/$comp/include/esp32s3"
done
add "$C/soc/esp32s3/include" "$C/soc/esp32s3/register" "$C/soc/include" \
    "$C/hal/esp32s3/include" "$C/hal/include" "$C/hal/platform_port/include" \
    "$C/esp_rom/esp32s3" "$C/esp_rom/esp32s3/include" "$C/esp_rom/esp32s3/include/esp32s3" \
    "$C/esp_hw_support/include/soc" "$C/esp_hw_support/include/soc/esp32s3" \
    "$C/esp_hw_support/port/esp32s3/include" "$C/esp_hw_support/etm/include" \
    "$C/esp_hw_support/ldo/include" "$C/esp_hw_support/debug_probe/include" \
    "$C/esp_system/port/include" "$C/esp_common/include" \
    "$C/freertos/config/include" "$C/freertos/config/include/freertos" \
    "$C/freertos/config/xtensa/include" "$C/freertos/FreeRTOS-Kernel/include" \
    "$C/freertos/FreeRTOS-Kernel/portable/xtensa/include" \
    "$C/freertos/FreeRTOS-Kernel/portable/xtensa/include/freertos" \
    "$C/freertos/esp_additions/include" \
    "$C/xtensa/include" "$C/xtensa/esp32s3/include" \
    "$C/esp_wifi/include/local" "$C/esp_wifi/wifi_apps/include" \
    "$C/esp_wifi/wifi_apps/nan_app/include" \
    "$C/esp_netif/include" "$C/lwip/include" "$C/lwip/port/include" \
    "$C/mbedtls/port/include" "$C/mbedtls/esp_crt_bundle/include" \
    "$C/console" "$C/esp-tls" "$C/esp-tls/esp-tls-crypto" \
    \
    "$CACHE/mqtt/include" "$CACHE/mbedtls/include" "$CACHE/psa/include" "$CACHE/psa/drivers/builtin/include"

# ESP-IDF's warning set (tools/cmake/build.cmake), stricter: every warning is an error here.
CFLAGS=(-std=gnu17 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare
    -Wno-enum-conversion -Wno-old-style-declaration -Wformat
    -D__XTENSA__=1 -DESP_PLATFORM=1 -DIDF_VER=\"v6.2-dev\" -DSOC_MMU_PAGE_SIZE=0x10000
    -DPROJECT_NAME=\"csi_sensor\" -DPROJECT_VER=\"1.0.0\" -D_GNU_SOURCE)

SOURCES=(firmware/components/ota_port_espidf/*.c firmware/main/*.c)
failures=0
total=0
for variant in mqtt http log2; do
    for src in "${SOURCES[@]}"; do
        total=$((total + 1))
        log="$WORK/$(basename "$src" .c).$variant.log"
        if gcc "${CFLAGS[@]}" -I"$WORK/shim" -I"$WORK/variant_$variant" "${INCLUDES[@]}" \
            -include "$WORK/shim/check_prelude.h" -include "$WORK/shim/check_log_format.h" \
            "$src" >"$log" 2>&1; then
            [ "$VERBOSE" = "-v" ] && echo "ok   [$variant] $src"
        else
            failures=$((failures + 1))
            echo "FAIL [$variant] $src"
            grep -m 8 -E "error|warning" "$log" | sed "s|$CACHE/idf/|<idf>/|" | sed "s/^/    /"
        fi
    done
done
echo "check_espidf_port: $((total - failures))/$total compilations clean (gcc -fsyntax-only, esp32s3 headers ${IDF_COMMIT:0:12})"

# ---- the portable core under the chip's integer model (it is an ESP-IDF component too) ---
core_failures=0
for src in firmware/components/ota_core/*.c; do
    log="$WORK/core.$(basename "$src" .c).log"
    if ! gcc -std=gnu17 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter \
        -DOTA_AGENT_TEST_HOOKS=1 -I"$WORK/shim" -I"$ROOT/firmware/components/ota_core/include" \
        -I"$ROOT/firmware/components/ota_core" "$src" >"$log" 2>&1; then
        core_failures=$((core_failures + 1))
        echo "FAIL [core, uint32_t = long] $src"
        grep -m 8 -E "error|warning" "$log" | sed "s/^/    /"
    fi
done
echo "check_espidf_port: ota_core with Xtensa's uint32_t: $core_failures file(s) failing"

# ---- host unit tests of the plain-C parts (cmocka) --------------------------------------
tests_failed=0
if [ -f /usr/include/cmocka.h ]; then
    run_test() { # name, sources…
        local name=$1
        shift
        if gcc -std=c11 -Wall -Wextra -Werror -Ifirmware/components/ota_port_espidf \
            -Ifirmware/main "$@" -lcmocka -o "$WORK/$name" && "$WORK/$name" >"$WORK/$name.log" 2>&1; then
            [ "$VERBOSE" = "-v" ] && cat "$WORK/$name.log"
            echo "host test $name: passed"
        else
            tests_failed=$((tests_failed + 1))
            echo "host test $name: FAILED"
            cat "$WORK/$name.log" 2>/dev/null || true
        fi
    }
    run_test test_ota_port_espidf_http_util \
        firmware/components/ota_port_espidf/test_host/test_ota_port_espidf_http_util.c \
        firmware/components/ota_port_espidf/ota_port_espidf_http_util.c
    run_test test_csi_frame firmware/main/test_host/test_csi_frame.c firmware/main/csi_frame.c
else
    echo "cmocka not installed (libcmocka-dev): host tests skipped"
fi
[ "$failures" -eq 0 ] && [ "$core_failures" -eq 0 ] && [ "$tests_failed" -eq 0 ]
