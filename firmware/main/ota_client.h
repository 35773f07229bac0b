/*
 * ota_client.h — the device's OTA client on ESP-IDF (the seed's ota_deployment_config_t
 * client): a FreeRTOS task that owns the portable OTA agent (ota_core's ota_agent.h). It
 * confirms or rolls back a fresh update at boot, then runs ota_agent_poll() for periodic
 * and requested checks. Other tasks (console) talk to it through these functions.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "provisioning.h"

/* Starts the task. `config` must outlive it. */
esp_err_t ota_client_start(const provisioning_t *config);

/* Console `ota check`: a version check at the next opportunity. */
esp_err_t ota_client_request_check(void);

/* Console `ota url <manifest-url>`: set and persist version_check_url. */
esp_err_t ota_client_set_manifest_url(const char *url);

/* Console `selftest fail-next` (test builds only): the next self-test fails. */
esp_err_t ota_client_fail_next_selftest(void);

/* The check interval the client runs with now (provisioned, or pushed by the controller);
 * 0 before ota_client_start(). Sent in every heartbeat. */
uint32_t ota_client_check_interval_sec(void);

/* Console `ota status`: the client's status JSON (waits up to 200 ms for a running
 * check; otherwise the snapshot taken after the last one, with "busy":true). */
void ota_client_status_json(char *buf, size_t cap);
