/*
 * heartbeat.c — {"device_id","version","uptime_s","rssi","csi_frames","free_heap","ota_state",
 * "slot","check_interval_sec","heartbeat_interval_sec"} to csi/<id>/heartbeat or
 * POST /api/devices/<id>/heartbeat (docs/device-protocol.md). The intervals let the
 * controller's rollout engine judge reach and silence against this device's own.
 */
#include "heartbeat.h"

#include "csi_capture.h"
#include "esp_app_desc.h"
#include "esp_log.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "ota_client.h"
#include "ota_img_state.h"
#include "ota_json.h"
#include "publish.h"
#include "wifi_station.h"

static const char *TAG = "heartbeat";

#define HEARTBEAT_JSON_BYTES 384
#define HEARTBEAT_STATS_EVERY 5u
#define HEARTBEAT_ACK_TIMEOUT_MS 5000u
#define HEARTBEAT_TASK_STACK_BYTES 4096
#define HEARTBEAT_MAX_INTERVAL_SEC (7u * 24u * 3600u) /* the device API's bound on the fields */

static const char *s_device_id;
static uint32_t s_interval_sec;
static SemaphoreHandle_t s_lock;
static QueueHandle_t s_wake; /* heartbeat_request(): send the next one now */
static char s_json[HEARTBEAT_JSON_BYTES];

static uint32_t heartbeat_uptime_s(void) {
    return (uint32_t)(esp_timer_get_time() / 1000000);
}

/* An interval as the protocol carries it (1 s .. 7 days); 0 = unknown, not sent. */
static uint32_t heartbeat_protocol_interval(uint32_t interval_sec) {
    return interval_sec > HEARTBEAT_MAX_INTERVAL_SEC ? HEARTBEAT_MAX_INTERVAL_SEC : interval_sec;
}

static bool heartbeat_send_locked(uint32_t timeout_ms) {
    ota_json_t json;
    ota_json_begin(&json, s_json, sizeof(s_json));
    ota_json_string(&json, "device_id", s_device_id);
    ota_json_string(&json, "version", esp_app_get_description()->version);
    ota_json_u64(&json, "uptime_s", heartbeat_uptime_s());
    ota_json_i64(&json, "rssi", wifi_station_rssi());
    ota_json_u64(&json, "csi_frames", csi_capture_frames_total());
    ota_json_u64(&json, "free_heap", esp_get_free_heap_size());
    ota_json_string(&json, "ota_state", ota_running_img_state_name());
    const int slot = ota_port_running_slot();
    if (slot != OTA_SLOT_NONE) {
        ota_json_u64(&json, "slot", (uint64_t)slot);
    }
    const uint32_t check_sec = heartbeat_protocol_interval(ota_client_check_interval_sec());
    if (check_sec != 0) {
        ota_json_u64(&json, "check_interval_sec", check_sec);
    }
    if (s_interval_sec != 0) {
        ota_json_u64(&json, "heartbeat_interval_sec", heartbeat_protocol_interval(s_interval_sec));
    }
    if (ota_json_end(&json) >= sizeof(s_json)) {
        ESP_LOGE(TAG, "heartbeat JSON truncated");
        return false;
    }
    return publish_heartbeat(s_json, timeout_ms);
}

static void heartbeat_send_stats_locked(void) {
    ota_json_t json;
    ota_json_begin(&json, s_json, sizeof(s_json));
    ota_json_string(&json, "device_id", s_device_id);
    ota_json_u64(&json, "uptime_s", heartbeat_uptime_s());
    ota_json_u64(&json, "csi_frames", csi_capture_frames_total());
    ota_json_u64(&json, "csi_dropped", csi_capture_frames_dropped());
    ota_json_u64(&json, "published", publish_sent_count());
    ota_json_u64(&json, "publish_errors", publish_error_count());
    ota_json_u64(&json, "min_free_heap", esp_get_minimum_free_heap_size());
    if (ota_json_end(&json) < sizeof(s_json)) {
        publish_stats(s_json);
    }
}

bool heartbeat_send_now(uint32_t timeout_ms) {
    if (s_lock == NULL) {
        return false;
    }
    xSemaphoreTake(s_lock, portMAX_DELAY);
    bool acked = heartbeat_send_locked(timeout_ms);
    xSemaphoreGive(s_lock);
    return acked;
}

static void heartbeat_task(void *arg) {
    (void)arg;
    for (uint32_t tick = 0;; tick++) {
        (void)wifi_station_wait_connected(HEARTBEAT_ACK_TIMEOUT_MS); /* right after boot */
        xSemaphoreTake(s_lock, portMAX_DELAY);
        if (heartbeat_send_locked(HEARTBEAT_ACK_TIMEOUT_MS)) {
            ESP_LOGI(TAG, "sent (version %s, ota_state %s)", esp_app_get_description()->version,
                     ota_running_img_state_name());
        } else {
            ESP_LOGW(TAG, "heartbeat not acknowledged");
        }
        if (tick % HEARTBEAT_STATS_EVERY == 0) {
            heartbeat_send_stats_locked();
        }
        xSemaphoreGive(s_lock);
        uint8_t wake;
        (void)xQueueReceive(s_wake, &wake, pdMS_TO_TICKS(s_interval_sec * 1000u));
    }
}

esp_err_t heartbeat_start(const char *device_id, uint32_t interval_sec) {
    s_device_id = device_id;
    s_interval_sec = interval_sec;
    s_lock = xSemaphoreCreateMutex();
    s_wake = xQueueCreate(1, sizeof(uint8_t));
    if (s_lock == NULL || s_wake == NULL) {
        return ESP_ERR_NO_MEM;
    }
    if (xTaskCreate(heartbeat_task, "heartbeat", HEARTBEAT_TASK_STACK_BYTES, NULL, 3, NULL) !=
        pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    return ESP_OK;
}

void heartbeat_request(void) {
    uint8_t wake = 1;
    if (s_wake != NULL) {
        (void)xQueueSend(s_wake, &wake, 0);
    }
}
