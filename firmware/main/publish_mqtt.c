/*
 * publish_mqtt.c — MQTT publishing (espressif/mqtt managed component):
 * csi/<device_id>/data (binary frames, QoS 0), csi/<device_id>/stats (QoS 0),
 * csi/<device_id>/heartbeat (JSON, QoS 1: its PUBACK is the acknowledgement).
 */
#include "sdkconfig.h"

#if CONFIG_CSI_OTA_PUBLISH_MQTT

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "ota_mqtt_credentials.h"
#include "publish.h"
#include "wifi_station.h"

static const char *TAG = "publish_mqtt";

#define PUBLISH_TOPIC_MAX_BYTES 64
#define PUBLISH_ACK_RING 8
#define PUBLISH_ACK_POLL_MS 20u

static esp_mqtt_client_handle_t s_client;
static char s_topic_data[PUBLISH_TOPIC_MAX_BYTES];
static char s_topic_stats[PUBLISH_TOPIC_MAX_BYTES];
static char s_topic_heartbeat[PUBLISH_TOPIC_MAX_BYTES];
static char s_mqtt_password[OTA_MQTT_PASSWORD_BUF_BYTES]; /* esp-mqtt keeps a pointer to it */
static volatile bool s_connected;
static atomic_flag s_client_started = ATOMIC_FLAG_INIT;
static volatile uint32_t s_sent;
static volatile uint32_t s_errors;
/* msg_ids of recent PUBACKs: the ack may arrive before publish() returns the id. */
static SemaphoreHandle_t s_ack_lock;
static int s_acked[PUBLISH_ACK_RING];
static size_t s_acked_next;

static void publish_mqtt_event(void *arg, esp_event_base_t base, int32_t event_id, void *data) {
    (void)arg;
    (void)base;
    esp_mqtt_event_handle_t event = data;
    switch ((esp_mqtt_event_id_t)event_id) {
    case MQTT_EVENT_CONNECTED:
        s_connected = true;
        ESP_LOGI(TAG, "connected to the broker");
        break;
    case MQTT_EVENT_DISCONNECTED:
        s_connected = false;
        ESP_LOGW(TAG, "disconnected from the broker");
        break;
    case MQTT_EVENT_PUBLISHED:
        xSemaphoreTake(s_ack_lock, portMAX_DELAY);
        s_acked[s_acked_next] = event->msg_id;
        s_acked_next = (s_acked_next + 1) % PUBLISH_ACK_RING;
        xSemaphoreGive(s_ack_lock);
        break;
    case MQTT_EVENT_ERROR:
        s_errors++;
        ESP_LOGW(TAG, "MQTT error");
        break;
    default:
        break;
    }
}

static bool publish_mqtt_was_acked(int msg_id) {
    bool found = false;
    xSemaphoreTake(s_ack_lock, portMAX_DELAY);
    for (size_t i = 0; i < PUBLISH_ACK_RING; i++) {
        if (s_acked[i] == msg_id) {
            found = true;
            s_acked[i] = 0;
        }
    }
    xSemaphoreGive(s_ack_lock);
    return found;
}

/* Starts the client once: a connection attempt before the station has an address fails and
 * esp-mqtt waits its reconnect timeout (10 s) before the next one, long enough to fail the
 * heartbeat_acked self-test of a freshly updated image. */
static void publish_mqtt_start_client(void) {
    if (atomic_flag_test_and_set(&s_client_started)) {
        return;
    }
    esp_err_t err = esp_mqtt_client_start(s_client);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_mqtt_client_start: %s", esp_err_to_name(err));
    }
}

static void publish_mqtt_on_got_ip(void *arg, esp_event_base_t base, int32_t event_id, void *data) {
    (void)arg;
    (void)base;
    (void)event_id;
    (void)data;
    publish_mqtt_start_client();
}

esp_err_t publish_start(const provisioning_t *config) {
    const char *id = config->deployment.device_id;
    snprintf(s_topic_data, sizeof(s_topic_data), "csi/%s/data", id);
    snprintf(s_topic_stats, sizeof(s_topic_stats), "csi/%s/stats", id);
    snprintf(s_topic_heartbeat, sizeof(s_topic_heartbeat), "csi/%s/heartbeat", id);
    s_ack_lock = xSemaphoreCreateMutex();
    if (s_ack_lock == NULL) {
        return ESP_ERR_NO_MEM;
    }
    /* The broker gets a password derived from the token, never the token itself (it opens the
     * HTTPS API): ota_mqtt_credentials.h. */
    const char *password = NULL;
    if (config->deployment.auth_token[0] != '\0') {
        ota_status_t derived = ota_mqtt_password(config->deployment.auth_token, s_mqtt_password,
                                                 sizeof(s_mqtt_password));
        if (derived != OTA_OK) {
            ESP_LOGE(TAG, "MQTT password: %s", ota_status_to_str(derived));
            return ESP_FAIL;
        }
        password = s_mqtt_password;
    }
    esp_mqtt_client_config_t mqtt = {
        .broker.address.uri = config->mqtt_uri,
        .broker.verification.certificate = config->ca_cert_pem,
        .credentials.client_id = id,
        .credentials.username = id,
        .credentials.authentication.password = password,
    };
    s_client = esp_mqtt_client_init(&mqtt);
    if (s_client == NULL) {
        return ESP_FAIL;
    }
    esp_err_t err =
        esp_mqtt_client_register_event(s_client, MQTT_EVENT_ANY, publish_mqtt_event, NULL);
    if (err == ESP_OK) {
        err =
            esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, publish_mqtt_on_got_ip, NULL);
    }
    if (err != ESP_OK) {
        return err;
    }
    ESP_LOGI(TAG, "publishing to %s as %s", config->mqtt_uri, id);
    if (wifi_station_wait_connected(0)) { /* the address came before the handler */
        publish_mqtt_start_client();
    }
    return ESP_OK;
}

bool publish_csi(const uint8_t *frames, size_t len) {
    if (!s_connected) {
        return false;
    }
    /* QoS 0: a lost CSI frame is cheaper than a backlog. */
    int id = esp_mqtt_client_publish(s_client, s_topic_data, (const char *)frames, (int)len, 0, 0);
    if (id < 0) {
        s_errors++;
        return false;
    }
    s_sent++;
    return true;
}

bool publish_heartbeat(const char *json, uint32_t timeout_ms) {
    /* Right after boot the broker connection may still be coming up: wait for it too. */
    uint32_t waited_ms = 0;
    while (!s_connected && waited_ms < timeout_ms) {
        vTaskDelay(pdMS_TO_TICKS(PUBLISH_ACK_POLL_MS));
        waited_ms += PUBLISH_ACK_POLL_MS;
    }
    if (!s_connected) {
        return false;
    }
    int msg_id = esp_mqtt_client_publish(s_client, s_topic_heartbeat, json, 0, 1, 0);
    if (msg_id <= 0) {
        s_errors++;
        return false;
    }
    s_sent++;
    for (; waited_ms <= timeout_ms; waited_ms += PUBLISH_ACK_POLL_MS) {
        if (publish_mqtt_was_acked(msg_id)) {
            return true;
        }
        vTaskDelay(pdMS_TO_TICKS(PUBLISH_ACK_POLL_MS));
    }
    ESP_LOGW(TAG, "heartbeat %d not acknowledged within %u ms", msg_id, (unsigned)timeout_ms);
    return false;
}

bool publish_stats(const char *json) {
    if (!s_connected) {
        return false;
    }
    int id = esp_mqtt_client_publish(s_client, s_topic_stats, json, 0, 0, 0);
    if (id < 0) {
        s_errors++;
        return false;
    }
    s_sent++;
    return true;
}

uint32_t publish_sent_count(void) {
    return s_sent;
}

uint32_t publish_error_count(void) {
    return s_errors;
}

#endif /* CONFIG_CSI_OTA_PUBLISH_MQTT */
