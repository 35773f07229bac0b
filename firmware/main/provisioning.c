/*
 * provisioning.c — reads the NVS provisioning image, Kconfig defaults otherwise.
 */
#include "provisioning.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_log.h"
#include "esp_mac.h"
#include "nvs.h"
#include "sdkconfig.h"

static const char *TAG = "provisioning";

#define PROVISIONING_CA_MAX_BYTES 4096

/* Copies the string key into dst if present; strings and blobs are both accepted. */
static bool provisioning_get_text(nvs_handle_t nvs, const char *key, char *dst, size_t cap) {
    nvs_type_t type;
    if (nvs_find_key(nvs, key, &type) != ESP_OK) {
        return false;
    }
    size_t len = cap;
    esp_err_t err;
    if (type == NVS_TYPE_STR) {
        err = nvs_get_str(nvs, key, dst, &len);
    } else if (type == NVS_TYPE_BLOB) {
        len = cap - 1;
        err = nvs_get_blob(nvs, key, dst, &len);
        if (err == ESP_OK) {
            dst[len] = '\0';
        }
    } else {
        ESP_LOGW(TAG, "key %s has a non-text type, ignored", key);
        return false;
    }
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "key %s unreadable (%s), using the default", key, esp_err_to_name(err));
        return false;
    }
    return true;
}

static char *provisioning_get_ca(nvs_handle_t nvs) {
    char *pem = malloc(PROVISIONING_CA_MAX_BYTES);
    if (pem == NULL) {
        return NULL;
    }
    if (!provisioning_get_text(nvs, OTA_PROVISIONING_KEY_CA_CERT, pem, PROVISIONING_CA_MAX_BYTES) ||
        pem[0] == '\0') {
        free(pem);
        return NULL;
    }
    return pem;
}

static void provisioning_defaults(provisioning_t *out) {
    memset(out, 0, sizeof(*out));
    ota_deployment_config_t *d = &out->deployment;
    snprintf(d->update_url, sizeof(d->update_url), "%s", CONFIG_CSI_OTA_UPDATE_URL);
    snprintf(d->version_check_url, sizeof(d->version_check_url), "%s",
             CONFIG_CSI_OTA_VERSION_CHECK_URL);
    d->check_interval_sec = (uint32_t)CONFIG_CSI_OTA_CHECK_INTERVAL_SEC;
#ifdef CONFIG_CSI_OTA_AUTO_UPDATE
    d->auto_update_enabled = CONFIG_CSI_OTA_AUTO_UPDATE != 0;
#else
    d->auto_update_enabled = false;
#endif
    snprintf(d->device_id, sizeof(d->device_id), "%s", CONFIG_CSI_OTA_DEVICE_ID);
    snprintf(d->auth_token, sizeof(d->auth_token), "%s", CONFIG_CSI_OTA_AUTH_TOKEN);
    snprintf(out->wifi_ssid, sizeof(out->wifi_ssid), "%s", CONFIG_CSI_OTA_WIFI_SSID);
    snprintf(out->wifi_password, sizeof(out->wifi_password), "%s", CONFIG_CSI_OTA_WIFI_PASSWORD);
#if CONFIG_CSI_OTA_PUBLISH_MQTT
    snprintf(out->mqtt_uri, sizeof(out->mqtt_uri), "%s", CONFIG_CSI_OTA_MQTT_URI);
#endif
#if CONFIG_CSI_OTA_PUBLISH_HTTP
    snprintf(out->data_url, sizeof(out->data_url), "%s", CONFIG_CSI_OTA_DATA_URL);
#endif
}

static void provisioning_default_device_id(provisioning_t *out) {
    if (out->deployment.device_id[0] != '\0') {
        return;
    }
    uint8_t mac[6] = {0};
    esp_err_t err = esp_read_mac(mac, ESP_MAC_WIFI_STA);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "esp_read_mac failed: %s", esp_err_to_name(err));
    }
    snprintf(out->deployment.device_id, sizeof(out->deployment.device_id),
             "csi_%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

esp_err_t provisioning_load(provisioning_t *out) {
    provisioning_defaults(out);
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(OTA_PROVISIONING_NAMESPACE, NVS_READONLY, &nvs);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        ESP_LOGW(TAG, "no provisioning image (NVS namespace %s): Kconfig defaults",
                 OTA_PROVISIONING_NAMESPACE);
        provisioning_default_device_id(out);
        return ESP_OK;
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open failed: %s", esp_err_to_name(err));
        provisioning_default_device_id(out);
        return err;
    }
    ota_deployment_config_t *d = &out->deployment;
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_UPDATE_URL, d->update_url,
                          sizeof(d->update_url));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_VERSION_URL, d->version_check_url,
                          sizeof(d->version_check_url));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_DEVICE_ID, d->device_id, sizeof(d->device_id));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_AUTH_TOKEN, d->auth_token,
                          sizeof(d->auth_token));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_WIFI_SSID, out->wifi_ssid,
                          sizeof(out->wifi_ssid));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_WIFI_PASSWORD, out->wifi_password,
                          sizeof(out->wifi_password));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_MQTT_URI, out->mqtt_uri, sizeof(out->mqtt_uri));
    provisioning_get_text(nvs, OTA_PROVISIONING_KEY_DATA_URL, out->data_url, sizeof(out->data_url));
    uint32_t interval_sec = 0;
    if (nvs_get_u32(nvs, OTA_PROVISIONING_KEY_CHECK_INTERVAL, &interval_sec) == ESP_OK) {
        if (interval_sec >= 60) {
            d->check_interval_sec = interval_sec;
        } else {
            ESP_LOGW(TAG, "check_int_sec %" PRIu32 " below 60 s, ignored", interval_sec);
        }
    }
    uint8_t auto_update = 0;
    if (nvs_get_u8(nvs, OTA_PROVISIONING_KEY_AUTO_UPDATE, &auto_update) == ESP_OK) {
        d->auto_update_enabled = auto_update != 0;
    }
    out->ca_cert_pem = provisioning_get_ca(nvs);
    nvs_close(nvs);
    provisioning_default_device_id(out);
    ESP_LOGI(TAG, "device %s, check %s every %" PRIu32 " s (auto %s), CA %s", d->device_id,
             d->version_check_url, d->check_interval_sec, d->auto_update_enabled ? "on" : "off",
             out->ca_cert_pem != NULL ? "provisioned" : "none");
    return ESP_OK;
}
