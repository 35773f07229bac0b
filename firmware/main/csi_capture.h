/*
 * csi_capture.h — Wi-Fi CSI capture: the driver callback encodes each report as a
 * csi_frame (docs/csi-frame.md) into a queue that the publisher drains.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

/* Enables CSI reports (call after esp_wifi_start). device_id names the sender. */
esp_err_t csi_capture_start(const char *device_id);

/* Takes the next encoded frame; false when none arrived within timeout_ms. */
bool csi_capture_next(uint8_t *buf, size_t cap, size_t *len, uint32_t timeout_ms);

uint32_t csi_capture_frames_total(void);   /* reports received from the driver */
uint32_t csi_capture_frames_dropped(void); /* lost because the queue was full */

/* Self-test: true when a new CSI report arrives within timeout_ms. */
bool csi_capture_wait_new_frame(uint32_t timeout_ms);
