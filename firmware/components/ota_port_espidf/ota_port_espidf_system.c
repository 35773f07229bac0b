/*
 * ota_port_espidf_system.c — key-value storage (NVS), time, randomness, reboot and log
 * of ota_port.h.
 */
#include <stdarg.h>
#include <stdio.h>

#include "esp_err.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs.h"

#include "ota_port.h"
#include "ota_port_espidf_priv.h"

static const char *TAG = OTA_PORT_ESPIDF_TAG;

#define SYSTEM_NVS_NAMESPACE "csi_ota"
#define SYSTEM_LOG_LINE_BYTES 512

/* ---------------------------------------------------------------- NVS -- */

static ota_status_t system_nvs_open(nvs_open_mode_t mode, nvs_handle_t *handle) {
    esp_err_t err = nvs_open(SYSTEM_NVS_NAMESPACE, mode, handle);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return OTA_ERR_NOT_FOUND; /* read-only open of a namespace never written */
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open(%s) failed: %s", SYSTEM_NVS_NAMESPACE, esp_err_to_name(err));
        return OTA_ERR_IO;
    }
    return OTA_OK;
}

ota_status_t ota_port_kv_get(const char *key, void *buf, size_t *len) {
    if (key == NULL || len == NULL || (buf == NULL && *len > 0)) {
        return OTA_ERR_INVALID_ARG;
    }
    nvs_handle_t handle;
    ota_status_t status = system_nvs_open(NVS_READONLY, &handle);
    if (status != OTA_OK) {
        return status;
    }
    size_t stored_len = 0;
    esp_err_t err = nvs_get_blob(handle, key, NULL, &stored_len);
    if (err == ESP_OK && stored_len > *len) {
        nvs_close(handle);
        *len = stored_len;
        return OTA_ERR_NO_MEM;
    }
    if (err == ESP_OK) {
        err = nvs_get_blob(handle, key, buf, &stored_len);
    }
    nvs_close(handle);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return OTA_ERR_NOT_FOUND;
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_get_blob(%s) failed: %s", key, esp_err_to_name(err));
        return OTA_ERR_IO;
    }
    *len = stored_len;
    return OTA_OK;
}

ota_status_t ota_port_kv_set(const char *key, const void *buf, size_t len) {
    if (key == NULL || (buf == NULL && len > 0)) {
        return OTA_ERR_INVALID_ARG;
    }
    nvs_handle_t handle;
    ota_status_t status = system_nvs_open(NVS_READWRITE, &handle);
    if (status != OTA_OK) {
        return status;
    }
    /* NVS writes the new blob (data chunks, then its index) before erasing the old one, so a
     * power cut mostly keeps one of them. Not always: a cut after the new chunk became the
     * active page's last item and before its index is written makes ESP-IDF's page load
     * erase the old chunk as a duplicate, and the key is gone (docs/sim.md, NVS): the next
     * ota_port_kv_get answers OTA_ERR_NOT_FOUND, as if the record was never written. */
    esp_err_t err = nvs_set_blob(handle, key, buf, len);
    if (err == ESP_OK) {
        err = nvs_commit(handle);
    }
    nvs_close(handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_set_blob(%s) failed: %s", key, esp_err_to_name(err));
        return err == ESP_ERR_NVS_KEY_TOO_LONG ? OTA_ERR_INVALID_ARG : OTA_ERR_IO;
    }
    return OTA_OK;
}

ota_status_t ota_port_kv_erase(const char *key) {
    if (key == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    nvs_handle_t handle;
    ota_status_t status = system_nvs_open(NVS_READWRITE, &handle);
    if (status != OTA_OK) {
        return status;
    }
    esp_err_t err = nvs_erase_key(handle, key);
    if (err == ESP_OK) {
        err = nvs_commit(handle);
    }
    nvs_close(handle);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return OTA_ERR_NOT_FOUND;
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_erase_key(%s) failed: %s", key, esp_err_to_name(err));
        return OTA_ERR_IO;
    }
    return OTA_OK;
}

/* ------------------------------------------------- time, random, reboot -- */

uint64_t ota_port_monotonic_ms(void) {
    return (uint64_t)(esp_timer_get_time() / 1000);
}

void ota_port_sleep_ms(uint32_t ms) {
    TickType_t ticks = pdMS_TO_TICKS(ms);
    if (ticks == 0 && ms > 0) {
        ticks = 1;
    }
    vTaskDelay(ticks);
}

uint32_t ota_port_random_u32(void) {
    return esp_random();
}

void ota_port_reboot(void) {
    ESP_LOGI(TAG, "rebooting");
    esp_restart();
}

/* ------------------------------------------------------------------ log -- */

void ota_port_log(ota_log_level_t level, const char *tag, const char *fmt, va_list args) {
    char line[SYSTEM_LOG_LINE_BYTES];
    vsnprintf(line, sizeof(line), fmt, args);
    switch (level) {
    case OTA_LOG_ERROR:
        ESP_LOG_LEVEL(ESP_LOG_ERROR, tag, "%s", line);
        break;
    case OTA_LOG_WARN:
        ESP_LOG_LEVEL(ESP_LOG_WARN, tag, "%s", line);
        break;
    case OTA_LOG_DEBUG:
        ESP_LOG_LEVEL(ESP_LOG_DEBUG, tag, "%s", line);
        break;
    case OTA_LOG_INFO:
    default:
        ESP_LOG_LEVEL(ESP_LOG_INFO, tag, "%s", line);
        break;
    }
}
