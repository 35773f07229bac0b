/* sim_config.c — parses the virtual device's key=value configuration file. */
#include "sim_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_manifest.h"
#include "ota_provisioning_keys.h"
#include "ota_trusted_keys.h"
#include "sim_nvs.h"

#define SIM_CONFIG_LINE_MAX 2048
#define SIM_CONFIG_DEFAULT_SELFTEST_TIMEOUT_MS 3000u
#define SIM_CONFIG_DEFAULT_HEARTBEAT_INTERVAL_SEC 300u

static bool sim_config_copy(char *dst, size_t cap, const char *value) {
    size_t len = strlen(value);
    if (len >= cap) {
        return false;
    }
    memcpy(dst, value, len + 1);
    return true;
}

static bool sim_config_u32(const char *value, uint32_t min, uint32_t max, uint32_t *out) {
    if (value[0] < '0' || value[0] > '9') {
        return false;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(value, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max) {
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

bool sim_config_parse_trusted_keys(const char *text, ota_agent_config_t *client, char *why,
                                   size_t why_len) {
    ota_trusted_keys_result_t result;
    ota_status_t status = ota_trusted_keys_parse_list(
        text, client->trusted_keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &result);
    client->trusted_key_count = result.count;
    if (status == OTA_OK) {
        return true;
    }
    if (result.rejected == 0) { /* only truncated */
        snprintf(why, why_len, "trusted_keys: at most %d keys", OTA_AGENT_MAX_TRUSTED_KEYS);
    } else if (result.bad_status == OTA_ERR_CONFIG) {
        snprintf(why, why_len,
                 "trusted_keys: expected <16 hex key id>:<130 hex public key 04||X||Y>");
    } else if (result.bad_status == OTA_ERR_MANIFEST_KEY) {
        snprintf(why, why_len, "trusted_keys: key id %.16s is not SHA-256(key)[:8]",
                 result.bad_entry);
    } else {
        snprintf(why, why_len, "trusted_keys: cannot check key id %.16s: %s", result.bad_entry,
                 ota_status_to_str(result.bad_status));
    }
    return false;
}

static bool sim_config_set(sim_config_t *cfg, const char *key, const char *value, char *why,
                           size_t why_len) {
    ota_agent_config_t *c = &cfg->client;
    ota_deployment_config_t *d = &c->deployment;
    bool ok = true;
    if (strcmp(key, "update_url") == 0) {
        ok = sim_config_copy(d->update_url, sizeof(d->update_url), value);
    } else if (strcmp(key, "version_check_url") == 0) {
        ok = sim_config_copy(d->version_check_url, sizeof(d->version_check_url), value);
    } else if (strcmp(key, "check_interval_sec") == 0) {
        ok = sim_config_u32(value, 1, 604800, &d->check_interval_sec);
    } else if (strcmp(key, "auto_update_enabled") == 0) {
        ok = strcmp(value, "0") == 0 || strcmp(value, "1") == 0;
        d->auto_update_enabled = strcmp(value, "1") == 0;
    } else if (strcmp(key, "device_id") == 0) {
        ok = value[0] != '\0' && sim_config_copy(d->device_id, sizeof(d->device_id), value);
    } else if (strcmp(key, "auth_token") == 0) {
        ok = sim_config_copy(d->auth_token, sizeof(d->auth_token), value);
    } else if (strcmp(key, "trusted_keys") == 0) {
        return sim_config_parse_trusted_keys(value, c, why, why_len);
    } else if (strcmp(key, "ca_cert") == 0) {
        ok = sim_config_copy(cfg->ca_cert, sizeof(cfg->ca_cert), value);
    } else if (strcmp(key, "project") == 0) {
        ok = value[0] != '\0' && sim_config_copy(c->project_name, sizeof(c->project_name), value);
    } else if (strcmp(key, "retry_count") == 0) {
        ok = sim_config_u32(value, 0, 100, &c->retry_count);
    } else if (strcmp(key, "http_timeout_ms") == 0) {
        ok = sim_config_u32(value, 1, 600000, &c->http_timeout_ms);
    } else if (strcmp(key, "backoff_initial_ms") == 0) {
        ok = sim_config_u32(value, 1, 3600000, &c->backoff_initial_ms);
    } else if (strcmp(key, "backoff_max_ms") == 0) {
        ok = sim_config_u32(value, 1, 86400000, &c->backoff_max_ms);
    } else if (strcmp(key, "chunk_size_bytes") == 0) {
        ok = sim_config_u32(value, 64, 1048576, &c->chunk_size_bytes);
    } else if (strcmp(key, "persist_interval_bytes") == 0) {
        ok = sim_config_u32(value, 1, UINT32_MAX, &c->persist_interval_bytes);
    } else if (strcmp(key, "selftest_timeout_ms") == 0) {
        ok = sim_config_u32(value, 1, 600000, &cfg->selftest_timeout_ms);
    } else if (strcmp(key, "nvs_hmac_key") == 0) {
        ok = strlen(value) == 2 * sizeof(cfg->nvs_hmac_key) &&
             ota_manifest_hex_decode(value, strlen(value), cfg->nvs_hmac_key,
                                     sizeof(cfg->nvs_hmac_key));
        cfg->nvs_encryption = ok;
    } else if (strcmp(key, "allow_plain_http") == 0) {
        ok = strcmp(value, "0") == 0 || strcmp(value, "1") == 0;
        c->allow_plain_http = strcmp(value, "1") == 0;
    } else if (strcmp(key, "heartbeat_interval_sec") == 0) {
        ok = sim_config_u32(value, 0, 86400, &cfg->heartbeat_interval_sec);
    } else {
        snprintf(why, why_len, "unknown key '%s'", key);
        return false;
    }
    if (!ok) {
        snprintf(why, why_len, "invalid value for %s: '%s'", key, value);
    }
    return ok;
}

bool sim_config_load(const char *path, sim_config_t *out, char *why, size_t why_len) {
    memset(out, 0, sizeof(*out));
    ota_agent_config_defaults(&out->client);
    out->client.allow_plain_http = true; /* a test rig (CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP=y) */
    out->selftest_timeout_ms = SIM_CONFIG_DEFAULT_SELFTEST_TIMEOUT_MS;
    out->heartbeat_interval_sec = SIM_CONFIG_DEFAULT_HEARTBEAT_INTERVAL_SEC;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    char line[SIM_CONFIG_LINE_MAX];
    unsigned line_no = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        line_no++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(why, why_len, "%s:%u: line too long", path, line_no);
            ok = false;
            break;
        }
        while (len > 0 &&
               (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) {
            line[--len] = '\0';
        }
        const char *start = line;
        while (*start == ' ' || *start == '\t') {
            start++;
        }
        if (*start == '\0' || *start == '#') {
            continue;
        }
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            snprintf(why, why_len, "%s:%u: expected key=value", path, line_no);
            ok = false;
            break;
        }
        *eq = '\0';
        char reason[200];
        if (!sim_config_set(out, start, eq + 1, reason, sizeof(reason))) {
            snprintf(why, why_len, "%s:%u: %s", path, line_no, reason);
            ok = false;
        }
    }
    fclose(f);
    return ok;
}

bool sim_config_check(const sim_config_t *cfg, char *why, size_t why_len) {
    if (cfg->client.deployment.device_id[0] == '\0') {
        snprintf(why, why_len,
                 "device_id is required (config file, or the NVS provisioning image)");
        return false;
    }
    if (cfg->client.backoff_max_ms < cfg->client.backoff_initial_ms) {
        snprintf(why, why_len, "backoff_max_ms is below backoff_initial_ms");
        return false;
    }
    return true;
}

/* NVS key (docs/provisioning.md) -> config file key, for the string and integer settings. */
static const struct {
    const char *nvs_key;
    const char *config_key;
    char type; /* 's' string, 'w' u32, 'b' u8 */
} SIM_CONFIG_NVS_KEYS[] = {
    {OTA_PROVISIONING_KEY_UPDATE_URL, "update_url", 's'},
    {OTA_PROVISIONING_KEY_VERSION_URL, "version_check_url", 's'},
    {OTA_PROVISIONING_KEY_CHECK_INTERVAL, "check_interval_sec", 'w'},
    {OTA_PROVISIONING_KEY_AUTO_UPDATE, "auto_update_enabled", 'b'},
    {OTA_PROVISIONING_KEY_DEVICE_ID, "device_id", 's'},
    {OTA_PROVISIONING_KEY_AUTH_TOKEN, "auth_token", 's'},
};

bool sim_config_apply_nvs(sim_config_t *cfg, const uint8_t *nvs, size_t len, unsigned *applied,
                          char *why, size_t why_len) {
    *applied = 0;
    char value[SIM_CONFIG_PEM_MAX];
    for (size_t i = 0; i < sizeof(SIM_CONFIG_NVS_KEYS) / sizeof(SIM_CONFIG_NVS_KEYS[0]); i++) {
        const char *key = SIM_CONFIG_NVS_KEYS[i].nvs_key;
        sim_nvs_result_t r;
        if (SIM_CONFIG_NVS_KEYS[i].type == 's') {
            r = sim_nvs_get_str(nvs, len, OTA_PROVISIONING_NAMESPACE, key, value, sizeof(value));
        } else if (SIM_CONFIG_NVS_KEYS[i].type == 'w') {
            uint32_t n = 0;
            r = sim_nvs_get_u32(nvs, len, OTA_PROVISIONING_NAMESPACE, key, &n);
            snprintf(value, sizeof(value), "%lu", (unsigned long)n);
        } else {
            uint8_t n = 0;
            r = sim_nvs_get_u8(nvs, len, OTA_PROVISIONING_NAMESPACE, key, &n);
            snprintf(value, sizeof(value), "%u", (unsigned)n);
        }
        if (r == SIM_NVS_NOT_FOUND) {
            continue;
        }
        char reason[200];
        if (r != SIM_NVS_OK) {
            snprintf(why, why_len, "nvs %s: %s", key, sim_nvs_result_str(r));
            return false;
        }
        if (!sim_config_set(cfg, SIM_CONFIG_NVS_KEYS[i].config_key, value, reason,
                            sizeof(reason))) {
            snprintf(why, why_len, "nvs %s: %s", key, reason);
            return false;
        }
        (*applied)++;
    }
    sim_nvs_result_t r =
        sim_nvs_get_str(nvs, len, OTA_PROVISIONING_NAMESPACE, OTA_PROVISIONING_KEY_CA_CERT,
                        cfg->ca_cert_pem, sizeof(cfg->ca_cert_pem));
    if (r == SIM_NVS_OK) {
        (*applied)++;
    } else if (r != SIM_NVS_NOT_FOUND) {
        snprintf(why, why_len, "nvs " OTA_PROVISIONING_KEY_CA_CERT ": %s", sim_nvs_result_str(r));
        return false;
    }
    return true;
}
