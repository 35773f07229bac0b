/* esp_log.c — ESP_LOGx lines on stdout and esp_err_to_name(). */
#include "esp_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "esp_err.h"
#include "esp_http_client.h"
#include "esp_ota_ops.h"
#include "nvs.h"
#include "sim_board.h"

#define LOG_LINE_BYTES 1200

uint32_t esp_log_timestamp(void) {
    return (uint32_t)(sim_board_now_us() / 1000);
}

void esp_log_write(esp_log_level_t level, const char *tag, const char *format, ...) {
    static const char letters[] = {'N', 'E', 'W', 'I', 'D', 'V'};
    if (level == ESP_LOG_NONE || level > ESP_LOG_VERBOSE) {
        return;
    }
    if (level >= ESP_LOG_DEBUG && getenv("CSI_OTA_SIM_DEBUG") == NULL) {
        return; /* CONFIG_LOG_DEFAULT_LEVEL is INFO */
    }
    char message[LOG_LINE_BYTES];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    sim_board_stdout_lock();
    printf("%c (%lu) %s: %s\n", letters[level], (unsigned long)esp_log_timestamp(), tag, message);
    fflush(stdout);
    sim_board_stdout_unlock();
}

#define ERR_NAME(code)                                                                             \
    { code, #code }

static const struct {
    esp_err_t code;
    const char *name;
} ESP_ERR_NAMES[] = {
    ERR_NAME(ESP_OK),
    ERR_NAME(ESP_FAIL),
    ERR_NAME(ESP_ERR_NO_MEM),
    ERR_NAME(ESP_ERR_INVALID_ARG),
    ERR_NAME(ESP_ERR_INVALID_STATE),
    ERR_NAME(ESP_ERR_INVALID_SIZE),
    ERR_NAME(ESP_ERR_NOT_FOUND),
    ERR_NAME(ESP_ERR_NOT_SUPPORTED),
    ERR_NAME(ESP_ERR_TIMEOUT),
    ERR_NAME(ESP_ERR_INVALID_RESPONSE),
    ERR_NAME(ESP_ERR_INVALID_CRC),
    ERR_NAME(ESP_ERR_INVALID_VERSION),
    ERR_NAME(ESP_ERR_INVALID_MAC),
    ERR_NAME(ESP_ERR_NOT_FINISHED),
    ERR_NAME(ESP_ERR_NOT_ALLOWED),
    ERR_NAME(ESP_ERR_NVS_NOT_INITIALIZED),
    ERR_NAME(ESP_ERR_NVS_NOT_FOUND),
    ERR_NAME(ESP_ERR_NVS_TYPE_MISMATCH),
    ERR_NAME(ESP_ERR_NVS_READ_ONLY),
    ERR_NAME(ESP_ERR_NVS_NOT_ENOUGH_SPACE),
    ERR_NAME(ESP_ERR_NVS_INVALID_NAME),
    ERR_NAME(ESP_ERR_NVS_INVALID_HANDLE),
    ERR_NAME(ESP_ERR_NVS_KEY_TOO_LONG),
    ERR_NAME(ESP_ERR_NVS_INVALID_LENGTH),
    ERR_NAME(ESP_ERR_NVS_NO_FREE_PAGES),
    ERR_NAME(ESP_ERR_NVS_VALUE_TOO_LONG),
    ERR_NAME(ESP_ERR_NVS_PART_NOT_FOUND),
    ERR_NAME(ESP_ERR_OTA_PARTITION_CONFLICT),
    ERR_NAME(ESP_ERR_OTA_SELECT_INFO_INVALID),
    ERR_NAME(ESP_ERR_OTA_VALIDATE_FAILED),
    ERR_NAME(ESP_ERR_OTA_SMALL_SEC_VER),
    ERR_NAME(ESP_ERR_OTA_ROLLBACK_FAILED),
    ERR_NAME(ESP_ERR_OTA_ROLLBACK_INVALID_STATE),
    ERR_NAME(ESP_ERR_OTA_ALREADY_IN_PROGRESS),
    ERR_NAME(ESP_ERR_HTTP_MAX_REDIRECT),
    ERR_NAME(ESP_ERR_HTTP_CONNECT),
    ERR_NAME(ESP_ERR_HTTP_WRITE_DATA),
    ERR_NAME(ESP_ERR_HTTP_FETCH_HEADER),
    ERR_NAME(ESP_ERR_HTTP_INVALID_TRANSPORT),
    ERR_NAME(ESP_ERR_HTTP_CONNECTING),
    ERR_NAME(ESP_ERR_HTTP_EAGAIN),
    ERR_NAME(ESP_ERR_HTTP_CONNECTION_CLOSED),
};

const char *esp_err_to_name(esp_err_t code) {
    for (size_t i = 0; i < sizeof(ESP_ERR_NAMES) / sizeof(ESP_ERR_NAMES[0]); i++) {
        if (ESP_ERR_NAMES[i].code == code) {
            return ESP_ERR_NAMES[i].name;
        }
    }
    return "UNKNOWN ERROR";
}
