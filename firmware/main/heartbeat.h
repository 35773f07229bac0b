/*
 * heartbeat.h — periodic heartbeat (docs/device-protocol.md) and stats.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

/* Starts the heartbeat task; every tick sends a heartbeat, every 5th also stats. */
esp_err_t heartbeat_start(const char *device_id, uint32_t interval_sec);

/* Sends one heartbeat now and waits up to timeout_ms for its acknowledgement. */
bool heartbeat_send_now(uint32_t timeout_ms);

/* Wakes the heartbeat task: the next periodic heartbeat goes out now (after the boot's
 * confirm or rollback decision, so the controller sees the final image state at once). */
void heartbeat_request(void);
