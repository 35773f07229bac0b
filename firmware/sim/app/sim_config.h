/*
 * sim_config.h — the virtual device's configuration file (`--config FILE`).
 *
 * key=value lines ('#' comments, blank lines ignored). Keys: docs/sim.md.
 * Like the device, the sim then takes the settings of the NVS provisioning
 * image (`csi-ota provision`, namespace "csi_ota") from its flash's nvs
 * partition at every boot; those override the file, which plays the part
 * of the device's Kconfig defaults and holds the sim-only settings.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_agent.h"

#define SIM_CONFIG_PATH_MAX 512
#define SIM_CONFIG_PEM_MAX 4000 /* an NVS string holds at most 4000 bytes */

typedef struct {
    ota_agent_config_t client;
    char ca_cert[SIM_CONFIG_PATH_MAX];    /* file: path of a PEM CA bundle */
    char ca_cert_pem[SIM_CONFIG_PEM_MAX]; /* NVS: the PEM itself (wins over ca_cert) */
    uint32_t selftest_timeout_ms;
    uint32_t heartbeat_interval_sec; /* periodic heartbeat; 0 = off (default 300) */
    /* CONFIG_NVS_ENCRYPTION (HMAC scheme): the HMAC key "burnt into eFuse" (nvs_hmac_key=<64 hex>)
     */
    bool nvs_encryption;
    uint8_t nvs_hmac_key[32];
} sim_config_t;

/* Reads path; on error returns false with a one-line reason in why. */
bool sim_config_load(const char *path, sim_config_t *out, char *why, size_t why_len);

/* Applies the "csi_ota" namespace of an NVS partition image (len bytes) over cfg, with
 * the same checks as the file; *applied counts the settings found. false with a reason
 * in why when a stored value is invalid. */
bool sim_config_apply_nvs(sim_config_t *cfg, const uint8_t *nvs, size_t len, unsigned *applied,
                          char *why, size_t why_len);

/* What must hold once every source is applied (device_id set, backoff bounds). */
bool sim_config_check(const sim_config_t *cfg, char *why, size_t why_len);

/* Parses "<keyid>:<hex>,…" into the client's trusted keys with the core's
 * ota_trusted_keys_parse_list(): any bad entry (or more than OTA_AGENT_MAX_TRUSTED_KEYS)
 * refuses the config with a reason in why; empty entries are skipped. */
bool sim_config_parse_trusted_keys(const char *text, ota_agent_config_t *client, char *why,
                                   size_t why_len);
