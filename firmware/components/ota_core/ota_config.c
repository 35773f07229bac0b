/* ota_config.c — X-Device-Config pushes and their persisted form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_log.h"
#include "ota_url.h"

#define OTA_CONFIG_MIN_INTERVAL_SEC 1u
#define OTA_CONFIG_MAX_INTERVAL_SEC 604800u /* one week */

/* Keys a push may set (ota_deployment_config_t names). device_id is
 * provisioned identity and never changes remotely. */
typedef enum {
    OTA_FIELD_UPDATE_URL,
    OTA_FIELD_VERSION_CHECK_URL,
    OTA_FIELD_CHECK_INTERVAL,
    OTA_FIELD_AUTO_UPDATE,
    OTA_FIELD_AUTH_TOKEN,
    OTA_FIELD_COUNT,
} ota_config_field_t;

static const char *const OTA_CONFIG_FIELD_NAMES[OTA_FIELD_COUNT] = {
    "update_url", "version_check_url", "check_interval_sec", "auto_update_enabled", "auth_token",
};

static bool ota_config_set_text(char *dst, size_t cap, const char *value, bool must_be_url,
                                bool allow_plain_http) {
    size_t len = strlen(value);
    if (len == 0 || len >= cap) {
        return false;
    }
    if (must_be_url && !ota_url_scheme_allowed(value, allow_plain_http)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)value[i] < 0x21 || value[i] == 0x7F) {
            return false; /* no spaces or control characters */
        }
    }
    memcpy(dst, value, len + 1);
    return true;
}

static bool ota_config_set_field(ota_deployment_config_t *config, ota_config_field_t field,
                                 const char *value, bool allow_plain_http) {
    char *end = NULL;
    unsigned long n = 0;
    switch (field) {
    case OTA_FIELD_UPDATE_URL:
        return ota_config_set_text(config->update_url, sizeof(config->update_url), value, true,
                                   allow_plain_http);
    case OTA_FIELD_VERSION_CHECK_URL:
        return ota_config_set_text(config->version_check_url, sizeof(config->version_check_url),
                                   value, true, allow_plain_http);
    case OTA_FIELD_CHECK_INTERVAL:
        if (value[0] < '0' || value[0] > '9') {
            return false;
        }
        n = strtoul(value, &end, 10);
        if (*end != '\0' || n < OTA_CONFIG_MIN_INTERVAL_SEC || n > OTA_CONFIG_MAX_INTERVAL_SEC) {
            return false;
        }
        config->check_interval_sec = (uint32_t)n;
        return true;
    case OTA_FIELD_AUTO_UPDATE:
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
            config->auto_update_enabled = true;
            return true;
        }
        if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
            config->auto_update_enabled = false;
            return true;
        }
        return false;
    case OTA_FIELD_AUTH_TOKEN:
        return ota_config_set_text(config->auth_token, sizeof(config->auth_token), value, false,
                                   false);
    case OTA_FIELD_COUNT:
        break;
    }
    return false;
}

uint32_t ota_config_apply_form(ota_deployment_config_t *config, const char *form,
                               bool allow_plain_http) {
    uint32_t changed = 0;
    const char *cursor = form;
    char key[32];
    char value[256];
    bool too_long = false;
    while (ota_url_form_next(&cursor, key, sizeof(key), value, sizeof(value), &too_long)) {
        bool known = false;
        for (int f = 0; f < OTA_FIELD_COUNT; f++) {
            if (strcmp(key, OTA_CONFIG_FIELD_NAMES[f]) != 0) {
                continue;
            }
            known = true;
            if (ota_config_set_field(config, (ota_config_field_t)f, value, allow_plain_http)) {
                changed |= 1u << f;
            } else {
                OTA_LOGW("config push: invalid value for %s ignored", key);
            }
        }
        if (!known) {
            OTA_LOGD("config push: unknown key %s ignored", key);
        }
    }
    if (too_long) {
        OTA_LOGW("config push: malformed or over-long pair ignored");
    }
    return changed;
}

bool ota_config_to_form(const ota_deployment_config_t *config, uint32_t mask, char *out,
                        size_t cap) {
    out[0] = '\0';
    /* Built as a query string, then the leading '?' is dropped. */
    char form[OTA_URL_MAX_BYTES] = "";
    char num[12];
    for (int f = 0; f < OTA_FIELD_COUNT; f++) {
        if ((mask & (1u << f)) == 0) {
            continue;
        }
        const char *value = NULL;
        switch ((ota_config_field_t)f) {
        case OTA_FIELD_UPDATE_URL:
            value = config->update_url;
            break;
        case OTA_FIELD_VERSION_CHECK_URL:
            value = config->version_check_url;
            break;
        case OTA_FIELD_CHECK_INTERVAL:
            snprintf(num, sizeof(num), "%lu", (unsigned long)config->check_interval_sec);
            value = num;
            break;
        case OTA_FIELD_AUTO_UPDATE:
            value = config->auto_update_enabled ? "1" : "0";
            break;
        case OTA_FIELD_AUTH_TOKEN:
            value = config->auth_token;
            break;
        case OTA_FIELD_COUNT:
            break;
        }
        if (value == NULL ||
            !ota_url_append_query(form, sizeof(form), OTA_CONFIG_FIELD_NAMES[f], value)) {
            return false;
        }
    }
    const char *body = form[0] == '?' ? form + 1 : form;
    if (strlen(body) + 1 > cap) {
        return false;
    }
    memcpy(out, body, strlen(body) + 1);
    return true;
}

ota_status_t ota_config_persist_overrides(ota_agent_t *client) {
    char form[OTA_URL_MAX_BYTES];
    if (!ota_config_to_form(&client->config.deployment, client->config_override_mask, form,
                            sizeof(form))) {
        return OTA_ERR_NO_MEM;
    }
    return ota_store_save_text(OTA_KV_CONFIG, form);
}

#define OTA_CONFIG_URL_BITS (OTA_CONFIG_UPDATE_URL | OTA_CONFIG_VERSION_CHECK_URL)

void ota_config_push(ota_agent_t *client, const char *form) {
    if (form[0] == '\0') {
        return;
    }
    ota_deployment_config_t *d = &client->config.deployment;
    ota_deployment_config_t before = *d;
    ota_deployment_config_t after = *d;
    uint32_t changed = ota_config_apply_form(&after, form, client->config.allow_plain_http);
    if (changed == 0 || memcmp(&before, &after, sizeof(before)) == 0) {
        return;
    }
    bool urls_changed = strcmp(before.version_check_url, after.version_check_url) != 0 ||
                        strcmp(before.update_url, after.update_url) != 0;
    if (urls_changed && !client->config_on_trial) {
        /* Saved before the new URLs are: a power cut leaves the old config or a trial. */
        ota_config_prev_record_t prev = {.mask =
                                             client->config_override_mask & OTA_CONFIG_URL_BITS};
        memcpy(prev.version_check_url, before.version_check_url, sizeof(prev.version_check_url));
        memcpy(prev.update_url, before.update_url, sizeof(prev.update_url));
        if (ota_store_save_config_prev(&prev) != OTA_OK) {
            OTA_LOGW("config push: cannot keep the working URLs; new URLs not applied");
            memcpy(after.version_check_url, before.version_check_url,
                   sizeof(after.version_check_url));
            memcpy(after.update_url, before.update_url, sizeof(after.update_url));
            changed &= ~OTA_CONFIG_URL_BITS;
            urls_changed = false;
        } else {
            client->config_on_trial = true;
        }
    }
    *d = after;
    client->config_override_mask |= changed;
    OTA_LOGI("config pushed: %s", form);
    if (urls_changed) {
        OTA_LOGI("config: trying check URL %s (last working one kept until it answers)",
                 d->version_check_url);
    }
    if (ota_config_persist_overrides(client) != OTA_OK) {
        OTA_LOGW("could not persist pushed config");
    }
}

void ota_config_trial_worked(ota_agent_t *client) {
    if (!client->config_on_trial) {
        return;
    }
    if (ota_store_erase(OTA_KV_CONFIG_PREV) == OTA_OK) {
        client->config_on_trial = false;
        OTA_LOGI("config: check URL %s works", client->config.deployment.version_check_url);
    }
}

bool ota_config_trial_failed(ota_agent_t *client) {
    if (!client->config_on_trial) {
        return false;
    }
    ota_config_prev_record_t prev;
    if (ota_store_load_config_prev(&prev) != OTA_OK) {
        client->config_on_trial = false;
        return false;
    }
    prev.failures++;
    if (prev.failures < OTA_CONFIG_TRIAL_MAX_FAILURES) {
        ota_store_save_config_prev(&prev);
        return false;
    }
    ota_deployment_config_t *d = &client->config.deployment;
    OTA_LOGW("config: check URL %s failed %lu times; back to %s", d->version_check_url,
             (unsigned long)prev.failures, prev.version_check_url);
    memcpy(d->version_check_url, prev.version_check_url, sizeof(d->version_check_url));
    memcpy(d->update_url, prev.update_url, sizeof(d->update_url));
    client->config_override_mask =
        (client->config_override_mask & ~OTA_CONFIG_URL_BITS) | (prev.mask & OTA_CONFIG_URL_BITS);
    /* Restored config first, then the trial record: a power cut repeats the revert. */
    if (ota_config_persist_overrides(client) != OTA_OK) {
        OTA_LOGW("could not persist the restored config");
        return true;
    }
    ota_store_erase(OTA_KV_CONFIG_PREV);
    client->config_on_trial = false;
    return true;
}
