/*
 * sim_app.h — the virtual CSI sensor app that runs after the bootloader
 * model has picked an image: its self-test hooks, console and main loop.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ota_agent.h"
#include "sim_config.h"

typedef struct {
    const sim_config_t *config;
    ota_agent_t *client;
    char behaviour[32]; /* image marker: normal, crash_at_boot, fail_selftest */
    char partition_label[17];
    uint64_t app_start_ms;      /* monotonic time the app started */
    uint64_t next_heartbeat_ms; /* monotonic time of the next periodic heartbeat */
} sim_app_t;

/* Installs the four self-test hooks (wifi, controller, csi_frames, heartbeat) in config. */
void sim_selftest_install(sim_app_t *app, ota_agent_config_t *config);

/* Synthetic CSI frames captured since the app started (none for fail_selftest). */
uint64_t sim_app_csi_frames(const sim_app_t *app);

/* One request to the origin of the version-check URL with the device's bearer
 * token (ota_port_http_open). Any HTTP status proves reachability unless want_2xx. */
ota_status_t sim_app_controller_request(const sim_app_t *app, const char *path, const char *body,
                                        uint32_t timeout_ms, bool want_2xx);

/* POST /api/devices/<id>/heartbeat (docs/device-protocol.md); OTA_OK on a 2xx. */
ota_status_t sim_app_heartbeat_send(const sim_app_t *app, uint32_t timeout_ms);

/* Sends the periodic heartbeat when due (config heartbeat_interval_sec, 0 = off):
 * the first call after boot/confirm sends at once, then every interval of
 * (time-scaled) monotonic time. Logs `heartbeat: sent (...)` or `heartbeat: failed: <reason>`. */
void sim_app_heartbeat_poll(sim_app_t *app, uint64_t now_ms);

/* One console line. Returns false for `exit`. May not return (`reboot`, `ota check`). */
bool sim_console_execute(sim_app_t *app, const char *line);
