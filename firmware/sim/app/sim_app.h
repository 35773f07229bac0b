/*
 * sim_app.h — the virtual CSI sensor app that runs after the bootloader
 * model has picked an image: its self-test hooks, console and main loop.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ota_client.h"
#include "sim_config.h"

typedef struct {
    const sim_config_t *config;
    ota_client_t *client;
    char behaviour[32]; /* image marker: normal, crash_at_boot, fail_selftest */
    char partition_label[17];
    uint64_t app_start_ms; /* monotonic time the app started */
} sim_app_t;

/* Installs the four self-test hooks (wifi, controller, csi_frames, heartbeat) in config. */
void sim_selftest_install(sim_app_t *app, ota_client_config_t *config);

/* Synthetic CSI frames captured since the app started (none for fail_selftest). */
uint64_t sim_app_csi_frames(const sim_app_t *app);

/* One console line. Returns false for `exit`. May not return (`reboot`, `ota check`). */
bool sim_console_execute(sim_app_t *app, const char *line);
