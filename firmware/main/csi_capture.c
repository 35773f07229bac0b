/*
 * csi_capture.c — esp_wifi_set_csi_config / esp_wifi_set_csi_rx_cb / esp_wifi_set_csi.
 */
#include "csi_capture.h"

#include <string.h>

#include "csi_frame.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "sdkconfig.h"

#if !CONFIG_ESP_WIFI_CSI_ENABLED
#error "CSI capture needs CONFIG_ESP_WIFI_CSI_ENABLED=y (set in sdkconfig.defaults)"
#endif

static const char *TAG = "csi";

#define CSI_CAPTURE_QUEUE_DEPTH 16
#define CSI_CAPTURE_POLL_MS 50u

typedef struct {
    uint16_t len;
    uint8_t bytes[CSI_FRAME_MAX_BYTES];
} csi_capture_item_t;

static QueueHandle_t s_queue;
static uint32_t s_device_hash;
static volatile uint32_t s_frames_total;
static volatile uint32_t s_frames_dropped;
/* The driver calls back from the Wi-Fi task only: one scratch item suffices. */
static csi_capture_item_t s_scratch;

static void csi_capture_rx(void *ctx, wifi_csi_info_t *info) {
    (void)ctx;
    if (info == NULL || info->buf == NULL) {
        return;
    }
    const wifi_pkt_rx_ctrl_t *rx = &info->rx_ctrl;
    csi_frame_meta_t meta = {
        .flags = (uint8_t)((info->first_word_invalid ? CSI_FRAME_FLAG_FIRST_WORD_INVALID : 0) |
                           (rx->cwb ? CSI_FRAME_FLAG_BW_40MHZ : 0)),
        .device_hash = s_device_hash,
        .frame_seq = s_frames_total,
        .timestamp_us = (uint64_t)esp_timer_get_time(),
        .rx_timestamp_us = (uint32_t)rx->timestamp,
        .rssi = (int8_t)rx->rssi,
        .noise_floor = (int8_t)rx->noise_floor,
        .channel = (uint8_t)rx->channel,
        .secondary_channel = (uint8_t)rx->secondary_channel,
        .rate = (uint8_t)rx->rate,
        .mcs = (uint8_t)rx->mcs,
        .sig_mode = (uint8_t)rx->sig_mode,
    };
    memcpy(meta.src_mac, info->mac, sizeof(meta.src_mac));
    s_frames_total++;
    size_t len =
        csi_frame_encode(&meta, info->buf, info->len, s_scratch.bytes, sizeof(s_scratch.bytes));
    if (len == 0) {
        return;
    }
    s_scratch.len = (uint16_t)len;
    if (xQueueSend(s_queue, &s_scratch, 0) != pdTRUE) {
        s_frames_dropped++;
    }
}

esp_err_t csi_capture_start(const char *device_id) {
    s_device_hash = csi_frame_device_hash(device_id);
    s_queue = xQueueCreate(CSI_CAPTURE_QUEUE_DEPTH, sizeof(csi_capture_item_t));
    if (s_queue == NULL) {
        return ESP_ERR_NO_MEM;
    }
    wifi_csi_config_t config = {
        .lltf_en = true,
        .htltf_en = true,
        .stbc_htltf2_en = true,
        .ltf_merge_en = true,
        .channel_filter_en = true,
        .manu_scale = false,
        .shift = 0,
        .dump_ack_en = false,
    };
    esp_err_t err = esp_wifi_set_csi_config(&config);
    if (err == ESP_OK) {
        err = esp_wifi_set_csi_rx_cb(csi_capture_rx, NULL);
    }
    if (err == ESP_OK) {
        err = esp_wifi_set_csi(true);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "CSI capture not started: %s", esp_err_to_name(err));
        return err;
    }
    ESP_LOGI(TAG, "CSI capture started (device hash %08lx)", (unsigned long)s_device_hash);
    return ESP_OK;
}

bool csi_capture_next(uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms) {
    static csi_capture_item_t item; /* only the publisher task drains the queue */
    if (s_queue == NULL || xQueueReceive(s_queue, &item, pdMS_TO_TICKS(timeout_ms)) != pdTRUE) {
        return false;
    }
    if (item.len > cap) {
        return false;
    }
    memcpy(buf, item.bytes, item.len);
    *len = item.len;
    return true;
}

uint32_t csi_capture_frames_total(void) {
    return s_frames_total;
}

uint32_t csi_capture_frames_dropped(void) {
    return s_frames_dropped;
}

bool csi_capture_wait_new_frame(uint32_t timeout_ms) {
    const uint32_t start_count = s_frames_total;
    const int64_t deadline_us = esp_timer_get_time() + (int64_t)timeout_ms * 1000;
    while (esp_timer_get_time() < deadline_us) {
        if (s_frames_total != start_count) {
            return true;
        }
        vTaskDelay(pdMS_TO_TICKS(CSI_CAPTURE_POLL_MS));
    }
    return s_frames_total != start_count;
}
