/*
 * ota_client.c — the device's OTA client on ESP-IDF: the task that owns the portable OTA
 * agent (ota_core/ota_agent.h), its deployment config from provisioning, and the self-test
 * hooks the agent runs before confirming an update.
 */
#include "sdkconfig.h"
#if CONFIG_CSI_OTA_TEST_HOOKS
#ifndef OTA_AGENT_TEST_HOOKS
#define OTA_AGENT_TEST_HOOKS 1
#endif
#endif

#include "ota_client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi_capture.h"
#include "esp_app_desc.h"
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "heartbeat.h"
#include "ota_agent.h"
#include "ota_img_state.h"
#include "ota_port.h"
#include "ota_url.h"
#include "trusted_keys.h"
#include "wifi_station.h"

/* Test images only (Kconfig CSI_OTA_ALLOW_PLAIN_HTTP): http:// URLs accepted. */
#if CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP
#define OTA_CLIENT_ALLOW_PLAIN_HTTP true
#else
#define OTA_CLIENT_ALLOW_PLAIN_HTTP false
#endif

static const char *TAG = "ota_client";

#define OTA_CLIENT_STACK_BYTES 8192
#define OTA_CLIENT_PRIORITY 4
#define OTA_CLIENT_QUEUE_DEPTH 4
#define OTA_CLIENT_MAX_WAIT_MS 60000u
#define OTA_CLIENT_WIFI_WAIT_MS 30000u
#define OTA_CLIENT_STATUS_BYTES 1536 /* version_check_url (255) + last_report (511) + fields */
#define OTA_CLIENT_STATUS_LOCK_MS 200u
#define OTA_CLIENT_PROJECT_NAME "csi_sensor"

typedef enum {
    OTA_CLIENT_CMD_CHECK,
    OTA_CLIENT_CMD_SET_URL,
    OTA_CLIENT_CMD_FAIL_NEXT_SELFTEST,
} ota_client_cmd_kind_t;

typedef struct {
    ota_client_cmd_kind_t kind;
    char url[256];
} ota_client_cmd_t;

static ota_agent_t s_agent;
static QueueHandle_t s_commands;
static SemaphoreHandle_t s_agent_lock;
static char s_status_snapshot[OTA_CLIENT_STATUS_BYTES] = "{}";
static volatile uint32_t s_check_interval_sec; /* effective (pushed) value, for the heartbeat */

/* ------------------------------------------------------------ self-tests -- */

static ota_status_t selftest_wifi_up(void *ctx, uint32_t timeout_ms) {
    (void)ctx;
    return wifi_station_wait_connected(timeout_ms) ? OTA_OK : OTA_ERR_TIMEOUT;
}

/* The version-check URL with device_id, version and state=pending_verify (percent-encoded). */
static bool selftest_probe_url(char *out, size_t cap) {
    const ota_deployment_config_t *d = ota_agent_deployment(&s_agent);
    int n = snprintf(out, cap, "%s", d->version_check_url);
    return n > 0 && (size_t)n < cap && ota_url_append_query(out, cap, "device_id", d->device_id) &&
           ota_url_append_query(out, cap, "version", esp_app_get_description()->version) &&
           ota_url_append_query(out, cap, "state", "pending_verify");
}

/* The controller answers an authenticated version check (200 or 204). */
static ota_status_t selftest_controller_reachable(void *ctx, uint32_t timeout_ms) {
    (void)ctx;
    char url[512];
    if (!selftest_probe_url(url, sizeof(url))) {
        return OTA_ERR_CONFIG;
    }
    if (!ota_url_scheme_allowed(url, OTA_CLIENT_ALLOW_PLAIN_HTTP)) {
        return OTA_ERR_INSECURE_URL; /* as the core: no token over plain http */
    }
    ota_port_http_request_t request = {
        .method = "GET",
        .url = url,
        .bearer_token = ota_agent_deployment(&s_agent)->auth_token,
        .range_start = -1,
        .timeout_ms = timeout_ms,
    };
    ota_port_http_t *http = NULL;
    ota_port_http_response_t response;
    ota_status_t status = ota_port_http_open(&request, &http, &response);
    if (status != OTA_OK) {
        return status;
    }
    uint8_t sink[256];
    size_t n = 0;
    do {
        status = ota_port_http_read(http, sink, sizeof(sink), &n);
    } while (status == OTA_OK && n > 0);
    ota_port_http_close(http);
    if (response.status == 401 || response.status == 403) {
        return OTA_ERR_HTTP_AUTH;
    }
    return response.status == 200 || response.status == 204 ? OTA_OK : OTA_ERR_HTTP_STATUS;
}

static ota_status_t selftest_csi_frames(void *ctx, uint32_t timeout_ms) {
    (void)ctx;
    return csi_capture_wait_new_frame(timeout_ms) ? OTA_OK : OTA_ERR_TIMEOUT;
}

static ota_status_t selftest_heartbeat_acked(void *ctx, uint32_t timeout_ms) {
    (void)ctx;
    return heartbeat_send_now(timeout_ms) ? OTA_OK : OTA_ERR_TIMEOUT;
}

#if CONFIG_CSI_OTA_TEST_FAIL_SELFTEST
/* Hardware-test image "v2_fail_selftest": this build must never confirm itself. */
static ota_status_t selftest_forced_failure(void *ctx, uint32_t timeout_ms) {
    (void)ctx;
    (void)timeout_ms;
    ESP_LOGW(TAG, "test build: self-test fails (CONFIG_CSI_OTA_TEST_FAIL_SELFTEST)");
    return OTA_ERR_SELFTEST;
}
#endif

static void ota_client_add_selftest(ota_agent_config_t *config, const char *name,
                                    ota_status_t (*run)(void *, uint32_t)) {
    if (config->selftest_count < OTA_AGENT_MAX_SELFTESTS) {
        ota_selftest_hook_t *hook = &config->selftests[config->selftest_count++];
        hook->name = name;
        hook->run = run;
        hook->timeout_ms = (uint32_t)CONFIG_CSI_OTA_SELFTEST_TIMEOUT_MS;
    }
}

/* ------------------------------------------------------------- the task -- */

static void ota_client_snapshot(void) {
    ota_agent_status_json(&s_agent, s_status_snapshot, sizeof(s_status_snapshot));
    s_check_interval_sec = ota_agent_deployment(&s_agent)->check_interval_sec;
}

static void ota_client_apply(const ota_client_cmd_t *cmd) {
    ota_status_t status = OTA_OK;
    switch (cmd->kind) {
    case OTA_CLIENT_CMD_CHECK:
        ota_agent_request_check(&s_agent);
        return;
    case OTA_CLIENT_CMD_SET_URL:
        status = ota_agent_set_manifest_url(&s_agent, cmd->url);
        break;
    case OTA_CLIENT_CMD_FAIL_NEXT_SELFTEST:
#if CONFIG_CSI_OTA_TEST_HOOKS
        status = ota_agent_fail_next_selftest(&s_agent);
#else
        status = OTA_ERR_NOT_SUPPORTED;
#endif
        break;
    }
    if (status != OTA_OK) {
        ESP_LOGE(TAG, "console command failed: %s", ota_status_to_str(status));
    }
}

static void ota_client_main(void *arg) {
    (void)arg;
    /* The boot's reports (pending_verify, rolled_back) and checks need the network: wait
     * for the station first (bounded; without Wi-Fi the wifi_up self-test decides). */
    if (!wifi_station_wait_connected(OTA_CLIENT_WIFI_WAIT_MS)) {
        ESP_LOGW(TAG, "no Wi-Fi after %u ms; reports and checks retry later",
                 (unsigned)OTA_CLIENT_WIFI_WAIT_MS);
    }
    xSemaphoreTake(s_agent_lock, portMAX_DELAY);
    /* May run the self-tests and reboot (rollback) — does not return then. */
    ota_status_t status = ota_agent_on_boot(&s_agent);
    if (status != OTA_OK) {
        ESP_LOGW(TAG, "boot confirmation: %s", ota_status_to_str(status));
    }
    ota_client_snapshot();
    xSemaphoreGive(s_agent_lock);
    heartbeat_request();
    ESP_LOGI(TAG, "boot complete: %s %s", esp_app_get_description()->version,
             ota_running_img_state_name());

    for (;;) {
        const uint64_t now_ms = ota_port_monotonic_ms();
        const uint64_t next_ms = ota_agent_next_check_ms(&s_agent);
        uint64_t wait_ms = next_ms > now_ms ? next_ms - now_ms : 0;
        if (wait_ms > OTA_CLIENT_MAX_WAIT_MS) {
            wait_ms = OTA_CLIENT_MAX_WAIT_MS;
        }
        ota_client_cmd_t cmd;
        bool have_cmd = xQueueReceive(s_commands, &cmd, pdMS_TO_TICKS((uint32_t)wait_ms)) == pdTRUE;
        xSemaphoreTake(s_agent_lock, portMAX_DELAY);
        while (have_cmd) {
            ota_client_apply(&cmd);
            have_cmd = xQueueReceive(s_commands, &cmd, 0) == pdTRUE;
        }
        status = ota_agent_poll(&s_agent, ota_port_monotonic_ms());
        if (status != OTA_OK) {
            ESP_LOGW(TAG, "check: %s", ota_status_to_str(status));
        }
        ota_client_snapshot();
        xSemaphoreGive(s_agent_lock);
    }
}

esp_err_t ota_client_start(const provisioning_t *config) {
    ota_agent_config_t client_config;
    ota_agent_config_defaults(&client_config);
    client_config.deployment = config->deployment;
    snprintf(client_config.project_name, sizeof(client_config.project_name), "%s",
             OTA_CLIENT_PROJECT_NAME);
    client_config.allow_plain_http = OTA_CLIENT_ALLOW_PLAIN_HTTP;
    client_config.retry_count = (uint32_t)CONFIG_CSI_OTA_RETRY_COUNT;
    client_config.http_timeout_ms = (uint32_t)CONFIG_CSI_OTA_HTTP_TIMEOUT_MS;
    client_config.backoff_initial_ms = (uint32_t)CONFIG_CSI_OTA_BACKOFF_INITIAL_MS;
    client_config.backoff_max_ms = (uint32_t)CONFIG_CSI_OTA_BACKOFF_MAX_MS;
    client_config.chunk_size_bytes = (uint32_t)CONFIG_CSI_OTA_DOWNLOAD_CHUNK_BYTES;
    client_config.persist_interval_bytes = (uint32_t)CONFIG_CSI_OTA_PERSIST_INTERVAL_BYTES;
    client_config.trusted_key_count = trusted_keys_parse(
        CONFIG_CSI_OTA_TRUSTED_KEYS, client_config.trusted_keys, OTA_AGENT_MAX_TRUSTED_KEYS);
    ota_client_add_selftest(&client_config, "wifi_up", selftest_wifi_up);
    ota_client_add_selftest(&client_config, "controller_reachable", selftest_controller_reachable);
    ota_client_add_selftest(&client_config, "csi_frames", selftest_csi_frames);
    ota_client_add_selftest(&client_config, "heartbeat_acked", selftest_heartbeat_acked);
#if CONFIG_CSI_OTA_TEST_FAIL_SELFTEST
    ota_client_add_selftest(&client_config, "test_forced_failure", selftest_forced_failure);
#endif
    ota_status_t status = ota_agent_init(&s_agent, &client_config);
    if (status != OTA_OK) {
        ESP_LOGE(TAG, "ota_agent_init: %s", ota_status_to_str(status));
        return ESP_ERR_INVALID_ARG;
    }
    /* `ota status` answers with a real snapshot even while the boot self-test runs. */
    ota_client_snapshot();
    s_commands = xQueueCreate(OTA_CLIENT_QUEUE_DEPTH, sizeof(ota_client_cmd_t));
    s_agent_lock = xSemaphoreCreateMutex();
    if (s_commands == NULL || s_agent_lock == NULL) {
        return ESP_ERR_NO_MEM;
    }
    if (xTaskCreate(ota_client_main, "ota", OTA_CLIENT_STACK_BYTES, NULL, OTA_CLIENT_PRIORITY,
                    NULL) != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    return ESP_OK;
}

static esp_err_t ota_client_send(const ota_client_cmd_t *cmd) {
    if (s_commands == NULL) {
        return ESP_ERR_INVALID_STATE;
    }
    return xQueueSend(s_commands, cmd, 0) == pdTRUE ? ESP_OK : ESP_ERR_TIMEOUT;
}

esp_err_t ota_client_request_check(void) {
    ota_client_cmd_t cmd = {.kind = OTA_CLIENT_CMD_CHECK};
    return ota_client_send(&cmd);
}

esp_err_t ota_client_set_manifest_url(const char *url) {
    ota_client_cmd_t cmd = {.kind = OTA_CLIENT_CMD_SET_URL};
    if (url == NULL || strlen(url) >= sizeof(cmd.url)) {
        return ESP_ERR_INVALID_ARG;
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        return ESP_ERR_INVALID_ARG;
    }
    memcpy(cmd.url, url, strlen(url) + 1);
    return ota_client_send(&cmd);
}

esp_err_t ota_client_fail_next_selftest(void) {
#if CONFIG_CSI_OTA_TEST_HOOKS
    ota_client_cmd_t cmd = {.kind = OTA_CLIENT_CMD_FAIL_NEXT_SELFTEST};
    return ota_client_send(&cmd);
#else
    return ESP_ERR_NOT_SUPPORTED;
#endif
}

uint32_t ota_client_check_interval_sec(void) {
    return s_check_interval_sec;
}

void ota_client_status_json(char *buf, size_t cap) {
    if (s_agent_lock != NULL &&
        xSemaphoreTake(s_agent_lock, pdMS_TO_TICKS(OTA_CLIENT_STATUS_LOCK_MS)) == pdTRUE) {
        ota_client_snapshot();
        xSemaphoreGive(s_agent_lock);
        snprintf(buf, cap, "%s", s_status_snapshot);
        return;
    }
    /* A check or download is running: last snapshot, marked busy. */
    size_t len = strlen(s_status_snapshot);
    if (len >= 2 && s_status_snapshot[len - 1] == '}') {
        snprintf(buf, cap, "%.*s%s\"busy\":true}", (int)(len - 1), s_status_snapshot,
                 len > 2 ? "," : "");
    } else {
        snprintf(buf, cap, "{\"busy\":true}");
    }
}
