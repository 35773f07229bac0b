/*
 * app_main.c — the CSI sensor: Wi-Fi station, CSI capture and publishing (MQTT or HTTP),
 * heartbeat, the OTA task and the console. Start-up order matters: the OTA task's
 * boot self-test needs Wi-Fi, CSI, the publisher and the heartbeat already running.
 */
#include <stdlib.h>

#include "console_cmds.h"
#include "csi_capture.h"
#include "csi_frame.h"
#include "esp_app_desc.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "heartbeat.h"
#include "nvs_flash.h"
#include "ota_client.h"
#include "ota_port_espidf.h"
#include "provisioning.h"
#include "publish.h"
#include "sdkconfig.h"
#include "wifi_station.h"

static const char *TAG = "app";

#define APP_PUBLISHER_STACK_BYTES 4096
#define APP_PUBLISHER_PRIORITY 3
#define APP_CSI_WAIT_MS 1000u
#if CONFIG_CSI_OTA_PUBLISH_HTTP
#define APP_CSI_BATCH_FRAMES CONFIG_CSI_OTA_CSI_BATCH_FRAMES
#define APP_CSI_BATCH_WAIT_MS 200u
#else
#define APP_CSI_BATCH_FRAMES 1
#define APP_CSI_BATCH_WAIT_MS 0u
#endif

static provisioning_t s_provisioning;
static uint8_t s_batch[APP_CSI_BATCH_FRAMES * CSI_FRAME_MAX_BYTES];

/* Drains the CSI queue: one MQTT message per frame, or HTTP POSTs of up to N frames. */
static void app_csi_publisher_task(void *arg) {
    (void)arg;
    for (;;) {
        size_t used = 0;
        size_t frames = 0;
        size_t len = 0;
        uint32_t wait_ms = APP_CSI_WAIT_MS;
        while (frames < APP_CSI_BATCH_FRAMES &&
               csi_capture_next(s_batch + used, sizeof(s_batch) - used, &len, wait_ms)) {
            used += len;
            frames++;
            wait_ms = APP_CSI_BATCH_WAIT_MS;
        }
        if (used > 0) {
            publish_csi(s_batch, used);
        }
    }
}

static void app_check(esp_err_t err, const char *what) {
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "%s failed: %s", what, esp_err_to_name(err));
    }
}

void app_main(void) {
    const esp_app_desc_t *app = esp_app_get_description();
    ESP_LOGI(TAG, "%s %s starting", app->project_name, app->version);
    const esp_partition_t *running = esp_ota_get_running_partition();
    ESP_LOGI(TAG, "running partition %s, version %s", running != NULL ? running->label : "?",
             app->version);
#if CONFIG_CSI_OTA_TEST_CRASH_AT_BOOT
    /* Hardware-test image "v2_crash_at_boot": dies before anything can confirm it. */
    ESP_LOGE(TAG, "test build: abort() at boot (CONFIG_CSI_OTA_TEST_CRASH_AT_BOOT)");
    abort();
#endif

    /* NVS holds the provisioning image and the OTA state: never erase it here. */
    esp_err_t err = nvs_flash_init();
    app_check(err, "nvs_flash_init");
    app_check(provisioning_load(&s_provisioning), "provisioning_load");
    if (ota_port_espidf_init(s_provisioning.ca_cert_pem) != OTA_OK) {
        ESP_LOGE(TAG, "ota_port_espidf_init failed");
    }

    app_check(wifi_station_start(s_provisioning.wifi_ssid, s_provisioning.wifi_password),
              "wifi_station_start");
    app_check(csi_capture_start(s_provisioning.deployment.device_id), "csi_capture_start");
    app_check(publish_start(&s_provisioning), "publish_start");
    if (xTaskCreate(app_csi_publisher_task, "csi_pub", APP_PUBLISHER_STACK_BYTES, NULL,
                    APP_PUBLISHER_PRIORITY, NULL) != pdPASS) {
        ESP_LOGE(TAG, "CSI publisher task not created");
    }
    app_check(heartbeat_start(s_provisioning.deployment.device_id,
                              (uint32_t)CONFIG_CSI_OTA_HEARTBEAT_INTERVAL_SEC),
              "heartbeat_start");
    app_check(ota_client_start(&s_provisioning), "ota_client_start");
    app_check(console_cmds_start(), "console_cmds_start");
}
