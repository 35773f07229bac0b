/*
 * sim_config.h — the virtual device's configuration file (`--config FILE`).
 *
 * key=value lines ('#' comments, blank lines ignored). On the real device the
 * same values come from the NVS provisioning image (Kconfig defaults
 * otherwise); the sim reads a file instead. Keys: docs/architecture.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "ota_client.h"

#define SIM_CONFIG_PATH_MAX 512

typedef struct {
    ota_client_config_t client;
    char ca_cert[SIM_CONFIG_PATH_MAX];
    uint32_t selftest_timeout_ms;
    uint32_t heartbeat_interval_sec; /* periodic heartbeat; 0 = off (default 300) */
} sim_config_t;

/* Reads path; on error returns false with a one-line reason in why. */
bool sim_config_load(const char *path, sim_config_t *out, char *why, size_t why_len);

/* Parses "<keyid>:<hex>,…" into the client's trusted keys with the core's
 * ota_trusted_keys_parse_list(): any bad entry (or more than OTA_CLIENT_MAX_TRUSTED_KEYS)
 * refuses the config with a reason in why; empty entries are skipped. */
bool sim_config_parse_trusted_keys(const char *text, ota_client_config_t *client, char *why,
                                   size_t why_len);
