/*
 * publish.h — where CSI data, stats and heartbeats go: MQTT (publish_mqtt.c) or
 * HTTP (publish_http.c), chosen by CONFIG_CSI_OTA_PUBLISH_MQTT / _HTTP.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "provisioning.h"

/* Connects (MQTT) or prepares the client (HTTP). Keeps pointers into `config`. */
esp_err_t publish_start(const provisioning_t *config);

/* One or more concatenated CSI frames (csi/<id>/data or POST /api/csi/data). */
bool publish_csi(const uint8_t *frames, size_t len);

/* Sends a heartbeat JSON and waits up to timeout_ms for its acknowledgement
 * (MQTT QoS 1 PUBACK, or HTTP 2xx). */
bool publish_heartbeat(const char *json, uint32_t timeout_ms);

/* Counters JSON (csi/<id>/stats; HTTP has no stats endpoint: returns false). */
bool publish_stats(const char *json);

/* Messages handed to the transport, and failures. */
uint32_t publish_sent_count(void);
uint32_t publish_error_count(void);
