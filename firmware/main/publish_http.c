/*
 * publish_http.c — HTTP publishing: POST <data_url>/api/csi/data (concatenated binary
 * frames, application/octet-stream) and POST <data_url>/api/devices/<id>/heartbeat
 * (JSON; a 2xx is the acknowledgement). One kept-alive esp_http_client per kind,
 * each used by one task only (publisher task / heartbeat).
 */
#include "sdkconfig.h"

#if CONFIG_CSI_OTA_PUBLISH_HTTP

#include <stdio.h>
#include <string.h>

#include "esp_http_client.h"
#if CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
#include "esp_crt_bundle.h"
#endif
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "publish.h"

static const char *TAG = "publish_http";

#define PUBLISH_URL_MAX_BYTES 256
#define PUBLISH_AUTH_MAX_BYTES 160
#define PUBLISH_DATA_TIMEOUT_MS 5000

typedef struct {
    esp_http_client_handle_t client;
    char url[PUBLISH_URL_MAX_BYTES];
    const char *content_type;
    SemaphoreHandle_t lock;
} publish_endpoint_t;

static publish_endpoint_t s_data;
static publish_endpoint_t s_heartbeat;
static char s_authorization[PUBLISH_AUTH_MAX_BYTES];
static const char *s_ca_cert_pem;
static volatile uint32_t s_sent;
static volatile uint32_t s_errors;

static esp_err_t publish_http_endpoint_init(publish_endpoint_t *endpoint,
                                            const char *content_type) {
    endpoint->content_type = content_type;
    endpoint->lock = xSemaphoreCreateMutex();
    if (endpoint->lock == NULL) {
        return ESP_ERR_NO_MEM;
    }
    esp_http_client_config_t config = {
        .url = endpoint->url,
        .method = HTTP_METHOD_POST,
        .timeout_ms = PUBLISH_DATA_TIMEOUT_MS,
        .keep_alive_enable = true,
        .cert_pem = strncmp(endpoint->url, "https://", 8) == 0 ? s_ca_cert_pem : NULL,
    };
#if CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
    /* No provisioned CA: verify the server against the bundle, as the OTA port does. */
    if (config.cert_pem == NULL) {
        config.crt_bundle_attach = esp_crt_bundle_attach;
    }
#endif
    endpoint->client = esp_http_client_init(&config);
    if (endpoint->client == NULL) {
        return ESP_ERR_NO_MEM;
    }
    esp_err_t err = esp_http_client_set_header(endpoint->client, "Content-Type", content_type);
    if (err == ESP_OK && s_authorization[0] != '\0') {
        err = esp_http_client_set_header(endpoint->client, "Authorization", s_authorization);
    }
    return err;
}

/* POSTs body; returns the HTTP status, or -1 when no response arrived or the endpoint was
 * never set up (publish_start refused the data URL: the app runs on without publishing). */
static int publish_http_post(publish_endpoint_t *endpoint, const char *body, size_t len,
                             uint32_t timeout_ms) {
    int status = -1;
    if (endpoint->lock == NULL || endpoint->client == NULL) {
        s_errors++;
        return status;
    }
    xSemaphoreTake(endpoint->lock, portMAX_DELAY);
    esp_http_client_set_timeout_ms(endpoint->client, (int)timeout_ms);
    esp_http_client_set_post_field(endpoint->client, body, (int)len);
    esp_err_t err = esp_http_client_perform(endpoint->client);
    if (err == ESP_OK) {
        status = esp_http_client_get_status_code(endpoint->client);
    } else {
        ESP_LOGW(TAG, "POST %s failed: %s", endpoint->url, esp_err_to_name(err));
        esp_http_client_close(endpoint->client);
    }
    xSemaphoreGive(endpoint->lock);
    if (status >= 200 && status < 300) {
        s_sent++;
    } else {
        s_errors++;
    }
    return status;
}

esp_err_t publish_start(const provisioning_t *config) {
    const char *base = config->data_url;
    const char *id = config->deployment.device_id;
#if !CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP
    if (strncmp(base, "https://", 8) != 0) {
        ESP_LOGE(TAG, "data URL %s: https only (the token must not travel in clear)", base);
        return ESP_ERR_INVALID_ARG;
    }
#endif
    s_ca_cert_pem = config->ca_cert_pem;
    if (config->deployment.auth_token[0] != '\0') {
        snprintf(s_authorization, sizeof(s_authorization), "Bearer %s",
                 config->deployment.auth_token);
    }
    int n = snprintf(s_data.url, sizeof(s_data.url), "%s/api/csi/data?device_id=%s", base, id);
    int m =
        snprintf(s_heartbeat.url, sizeof(s_heartbeat.url), "%s/api/devices/%s/heartbeat", base, id);
    if (n < 0 || (size_t)n >= sizeof(s_data.url) || m < 0 || (size_t)m >= sizeof(s_heartbeat.url)) {
        ESP_LOGE(TAG, "data URL too long: %s", base);
        return ESP_ERR_INVALID_ARG;
    }
    esp_err_t err = publish_http_endpoint_init(&s_data, "application/octet-stream");
    if (err == ESP_OK) {
        err = publish_http_endpoint_init(&s_heartbeat, "application/json");
    }
    if (err == ESP_OK) {
        ESP_LOGI(TAG, "publishing to %s as %s", base, id);
    }
    return err;
}

bool publish_csi(const uint8_t *frames, size_t len) {
    int status = publish_http_post(&s_data, (const char *)frames, len, PUBLISH_DATA_TIMEOUT_MS);
    return status >= 200 && status < 300;
}

bool publish_heartbeat(const char *json, uint32_t timeout_ms) {
    int status = publish_http_post(&s_heartbeat, json, strlen(json), timeout_ms);
    if (status < 200 || status >= 300) {
        ESP_LOGW(TAG, "heartbeat not acknowledged (HTTP %d)", status);
        return false;
    }
    return true;
}

bool publish_stats(const char *json) {
    (void)json; /* the HTTP API has no stats endpoint; counters ride on heartbeats */
    return false;
}

uint32_t publish_sent_count(void) {
    return s_sent;
}

uint32_t publish_error_count(void) {
    return s_errors;
}

#endif /* CONFIG_CSI_OTA_PUBLISH_HTTP */
