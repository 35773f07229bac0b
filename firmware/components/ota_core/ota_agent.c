/* ota_agent.c — configuration, scheduling, the version check and manifest policy. */
#include "ota_agent.h"

#include <stdio.h>
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_backoff.h"
#include "ota_img_state.h"
#include "ota_json.h"
#include "ota_log.h"
#include "ota_manifest.h"
#include "ota_url.h"
#include "ota_version.h"

#define OTA_MS_PER_SEC 1000u

static const char *const OTA_AGENT_PHASE_NAMES[] = {
    [OTA_AGENT_IDLE] = "idle",
    [OTA_AGENT_CHECKING] = "checking",
    [OTA_AGENT_DOWNLOADING] = "downloading",
    [OTA_AGENT_VERIFYING] = "verifying",
    [OTA_AGENT_SELFTEST] = "selftest",
};

/* ------------------------------------------------------------------------ */
/* helpers shared with the other ota_agent*.c files                         */
/* ------------------------------------------------------------------------ */

ota_status_t ota_agent_http_error(int http_status) {
    return (http_status == 401 || http_status == 403) ? OTA_ERR_HTTP_AUTH : OTA_ERR_HTTP_STATUS;
}

ota_status_t ota_agent_http_read_body(ota_port_http_t *http, char *buf, size_t cap, size_t *len) {
    size_t total = 0;
    for (;;) {
        size_t n = 0;
        if (total + 1 >= cap) {
            /* Buffer full: the body must end here. */
            char probe[1];
            ota_status_t status = ota_port_http_read(http, probe, sizeof(probe), &n);
            if (status != OTA_OK) {
                return status;
            }
            if (n != 0) {
                return OTA_ERR_NO_MEM;
            }
            break;
        }
        ota_status_t status = ota_port_http_read(http, buf + total, cap - 1 - total, &n);
        if (status != OTA_OK) {
            return status;
        }
        if (n == 0) {
            break;
        }
        total += n;
    }
    buf[total] = '\0';
    *len = total;
    return OTA_OK;
}

ota_status_t ota_agent_http_open(const ota_agent_t *client, ota_port_http_request_t *request,
                                 ota_port_http_t **http, ota_port_http_response_t *response) {
    const ota_deployment_config_t *d = &client->config.deployment;
    if (!ota_url_scheme_allowed(request->url, client->config.allow_plain_http)) {
        OTA_LOGE("refusing %s: https only (CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP is off)", request->url);
        return OTA_ERR_INSECURE_URL;
    }
    /* The bearer token goes to the controller's own origin only (its version_check_url). */
    request->bearer_token =
        ota_url_same_origin(request->url, d->version_check_url) && d->auth_token[0] != '\0'
            ? d->auth_token
            : NULL;
    return ota_port_http_open(request, http, response);
}

bool ota_agent_controller_url(const ota_agent_t *client, const char *path, char *out, size_t cap) {
    return ota_url_resolve(client->config.deployment.version_check_url, path, out, cap);
}

bool ota_agent_is_rejection(ota_status_t status) {
    switch (status) {
    case OTA_ERR_MANIFEST_FORMAT:
    case OTA_ERR_MANIFEST_SIGNATURE:
    case OTA_ERR_MANIFEST_KEY:
    case OTA_ERR_MANIFEST_PROJECT:
    case OTA_ERR_MANIFEST_REPLAY:
    case OTA_ERR_DOWNGRADE:
    case OTA_ERR_SECURE_VERSION:
    case OTA_ERR_SAME_VERSION:
    case OTA_ERR_IMAGE_TOO_LARGE:
    case OTA_ERR_IMAGE_HEADER:
    case OTA_ERR_CHIP_ID:
    case OTA_ERR_CHIP_REVISION:
    case OTA_ERR_IMAGE_SIZE:
    case OTA_ERR_IMAGE_DIGEST:
    case OTA_ERR_IMAGE_INVALID:
    case OTA_ERR_HEADER_TOO_LONG:
    case OTA_ERR_INSECURE_URL:
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------ */
/* init and configuration                                                    */
/* ------------------------------------------------------------------------ */

void ota_agent_config_defaults(ota_agent_config_t *config) {
    memset(config, 0, sizeof(*config));
    config->deployment.check_interval_sec = 3600;
    config->deployment.auto_update_enabled = true;
    strcpy(config->project_name, "csi_sensor");
    config->retry_count = OTA_AGENT_DEFAULT_RETRY_COUNT;
    config->backoff_initial_ms = OTA_AGENT_DEFAULT_BACKOFF_INITIAL_MS;
    config->backoff_max_ms = OTA_AGENT_DEFAULT_BACKOFF_MAX_MS;
    config->http_timeout_ms = OTA_AGENT_DEFAULT_HTTP_TIMEOUT_MS;
    config->chunk_size_bytes = OTA_AGENT_DEFAULT_CHUNK_BYTES;
    config->persist_interval_bytes = OTA_AGENT_DEFAULT_PERSIST_INTERVAL_BYTES;
}

static ota_status_t ota_agent_validate_config(const ota_agent_config_t *config) {
    if (config->trusted_key_count > OTA_AGENT_MAX_TRUSTED_KEYS ||
        config->selftest_count > OTA_AGENT_MAX_SELFTESTS || config->chunk_size_bytes < 64 ||
        config->persist_interval_bytes == 0 || config->backoff_initial_ms == 0 ||
        config->backoff_max_ms < config->backoff_initial_ms || config->http_timeout_ms == 0 ||
        config->project_name[0] == '\0' || config->deployment.device_id[0] == '\0' ||
        config->deployment.check_interval_sec == 0) {
        return OTA_ERR_CONFIG;
    }
    for (size_t i = 0; i < config->selftest_count; i++) {
        if (config->selftests[i].name == NULL || config->selftests[i].run == NULL) {
            return OTA_ERR_CONFIG;
        }
    }
    return OTA_OK;
}

static void ota_agent_schedule(ota_agent_t *client, uint64_t now_ms, bool failed) {
    uint64_t interval_ms = (uint64_t)client->config.deployment.check_interval_sec * OTA_MS_PER_SEC;
    if (failed) {
        uint64_t delay =
            ota_backoff_delay_ms(client->config.backoff_initial_ms, client->config.backoff_max_ms,
                                 client->consecutive_failures - 1);
        client->next_check_ms = now_ms + (delay < interval_ms ? delay : interval_ms);
    } else {
        client->next_check_ms =
            now_ms + ota_backoff_jittered_ms(interval_ms, ota_port_random_u32());
    }
}

ota_status_t ota_agent_init(ota_agent_t *client, const ota_agent_config_t *config) {
    memset(client, 0, sizeof(*client));
    ota_status_t status = ota_agent_validate_config(config);
    if (status != OTA_OK) {
        return status;
    }
    client->config = *config;
    client->last_check_status = OTA_OK;
    char form[OTA_URL_MAX_BYTES];
    if (ota_store_load_text(OTA_KV_CONFIG, form, sizeof(form)) == OTA_OK) {
        client->config_override_mask = ota_config_apply_form(&client->config.deployment, form,
                                                             client->config.allow_plain_http);
    }
    ota_config_prev_record_t prev;
    client->config_on_trial = ota_store_load_config_prev(&prev) == OTA_OK;
    if (ota_store_load_report(&client->report) != OTA_OK) {
        memset(&client->report, 0, sizeof(client->report));
    }
    if (ota_store_load_u32(OTA_KV_HIGHEST_SEQ, &client->highest_sequence) != OTA_OK) {
        client->highest_sequence = 0;
    }
    ota_app_desc_t desc;
    int running = ota_port_running_slot();
    if (running != OTA_SLOT_NONE && ota_port_slot_app_desc(running, &desc) == OTA_OK) {
        memcpy(client->running_version, desc.version, sizeof(client->running_version));
        client->running_version[sizeof(client->running_version) - 1] = '\0';
        client->running_secure_version = desc.secure_version;
    }
    /* First check soon after boot: within 10 % of the interval, at most a minute. */
    uint64_t interval_ms = (uint64_t)client->config.deployment.check_interval_sec * OTA_MS_PER_SEC;
    uint64_t first_ms = interval_ms / 10u < 60000u ? interval_ms / 10u : 60000u;
    client->next_check_ms =
        ota_port_monotonic_ms() + ((first_ms * (uint64_t)ota_port_random_u32()) >> 32);
    client->initialised = true;
    return OTA_OK;
}

ota_status_t ota_agent_set_manifest_url(ota_agent_t *client, const char *url) {
    ota_deployment_config_t *d = &client->config.deployment;
    if (url == NULL || !ota_url_is_absolute_http(url) ||
        strlen(url) >= sizeof(d->version_check_url)) {
        return OTA_ERR_INVALID_ARG;
    }
    if (!ota_url_scheme_allowed(url, client->config.allow_plain_http)) {
        return OTA_ERR_INSECURE_URL;
    }
    strcpy(d->version_check_url, url);
    client->config_override_mask |= OTA_CONFIG_VERSION_CHECK_URL;
    OTA_LOGI("manifest url set to %s", url);
    ota_status_t status = ota_config_persist_overrides(client);
    if (status == OTA_OK && client->config_on_trial &&
        ota_store_erase(OTA_KV_CONFIG_PREV) == OTA_OK) {
        client->config_on_trial = false; /* the operator's URL replaces any pushed one */
    }
    return status;
}

const ota_deployment_config_t *ota_agent_deployment(const ota_agent_t *client) {
    return &client->config.deployment;
}

void ota_agent_request_check(ota_agent_t *client) {
    client->check_requested = true;
}

uint64_t ota_agent_next_check_ms(const ota_agent_t *client) {
    if (client->check_requested) {
        return 0;
    }
    return client->config.deployment.auto_update_enabled ? client->next_check_ms : UINT64_MAX;
}

#ifdef OTA_AGENT_TEST_HOOKS
ota_status_t ota_agent_fail_next_selftest(ota_agent_t *client) {
    (void)client;
    OTA_LOGW("test hook: the next self-test will fail");
    return ota_store_save_u32(OTA_KV_FAIL_NEXT, 1);
}
#endif

/* ------------------------------------------------------------------------ */
/* the version check                                                         */
/* ------------------------------------------------------------------------ */

static bool ota_agent_build_check_url(const ota_agent_t *client, char *url, size_t cap) {
    const ota_deployment_config_t *d = &client->config.deployment;
    if (strlen(d->version_check_url) + 1 > cap) {
        return false;
    }
    strcpy(url, d->version_check_url);
    char num[12];
    int running = ota_port_running_slot();
    ota_img_state_t state = OTA_IMG_UNDEFINED;
    const char *state_name = "undefined";
    if (running != OTA_SLOT_NONE && ota_port_slot_state(running, &state) == OTA_OK) {
        state_name = ota_img_state_name(state);
    }
    bool ok = ota_url_append_query(url, cap, "device_id", d->device_id) &&
              ota_url_append_query(url, cap, "version", client->running_version);
    snprintf(num, sizeof(num), "%lu", (unsigned long)client->running_secure_version);
    ok = ok && ota_url_append_query(url, cap, "secure_version", num);
    snprintf(num, sizeof(num), "%d", running);
    ok = ok && ota_url_append_query(url, cap, "slot", num) &&
         ota_url_append_query(url, cap, "state", state_name);
    if (client->report.seq != 0) {
        snprintf(num, sizeof(num), "%lu", (unsigned long)client->report.seq);
        ok = ok && ota_url_append_query(url, cap, "last_seq", num) &&
             ota_url_append_query(url, cap, "last_reason", client->report.reason);
    }
    return ok;
}

/* An accepted release whose first boot was interrupted may be installed again,
 * at most retry_count more times (the seed's UPDATE_RETRY_COUNT). */
static bool ota_agent_retry_allowed(const ota_agent_t *client, const ota_manifest_t *m) {
    ota_retry_record_t retry;
    if (ota_store_load_retry(&retry) != OTA_OK || !retry.allowed || retry.sequence != m->sequence ||
        strcmp(retry.sha256, m->sha256_hex) != 0) {
        return false;
    }
    if (retry.installs > client->config.retry_count) {
        return false;
    }
    OTA_LOGW("retrying %s after an interrupted boot (install %lu of %lu)", m->version,
             (unsigned long)retry.installs + 1, (unsigned long)client->config.retry_count + 1);
    return true;
}

/* The device-side rules of docs/manifest.md that need the device's state. */
static ota_status_t ota_agent_check_policy(const ota_agent_t *client, const ota_manifest_t *m) {
    if (strcmp(m->project, client->config.project_name) != 0) {
        return OTA_ERR_MANIFEST_PROJECT;
    }
    ota_version_t offered;
    ota_version_t running;
    bool running_ok = ota_version_parse(client->running_version, &running);
    ota_version_parse(m->version, &offered); /* checked by the parser */
    if (running_ok && ota_version_compare(&offered, &running) == 0) {
        return OTA_ERR_SAME_VERSION;
    }
    if (m->sequence <= client->highest_sequence && !ota_agent_retry_allowed(client, m)) {
        return OTA_ERR_MANIFEST_REPLAY;
    }
    if (running_ok && ota_version_compare(&offered, &running) < 0 && !m->rollback) {
        return OTA_ERR_DOWNGRADE;
    }
    if (m->secure_version < client->running_secure_version) {
        return OTA_ERR_SECURE_VERSION;
    }
    uint16_t chip_id = 0;
    uint16_t chip_rev_full = 0;
    ota_port_chip_info(&chip_id, &chip_rev_full);
    if (m->chip_id != chip_id) {
        return OTA_ERR_CHIP_ID;
    }
    bool max_set = m->max_chip_rev_full != 0 && m->max_chip_rev_full != 0xFFFF;
    if (chip_rev_full < m->min_chip_rev_full || (max_set && chip_rev_full > m->max_chip_rev_full)) {
        return OTA_ERR_CHIP_REVISION;
    }
    int slot = ota_port_next_update_slot();
    uint32_t slot_size = 0;
    if (slot == OTA_SLOT_NONE || ota_port_slot_size(slot, &slot_size) != OTA_OK) {
        return OTA_ERR_NO_UPDATE_SLOT;
    }
    if (m->size_bytes > slot_size) {
        return OTA_ERR_IMAGE_TOO_LARGE;
    }
    return OTA_OK;
}

/* Reports a rejection once per (reason, target): the same offer refused again stays quiet. */
static void ota_agent_report_rejection(ota_agent_t *client, ota_status_t reason,
                                       const ota_manifest_t *m) {
    const char *sha = m != NULL ? m->sha256_hex : "";
    const ota_agent_report_t *last = &client->report;
    if (strcmp(last->state, OTA_REPORT_REJECTED) == 0 &&
        strcmp(last->reason, ota_status_to_reason(reason)) == 0 &&
        strcmp(last->target_sha256, sha) == 0) {
        return;
    }
    ota_report_details_t details = {
        .target_version = m != NULL ? m->version : "",
        .target_sha256 = sha,
        .manifest_sequence = m != NULL ? m->sequence : 0,
    };
    ota_report(client, OTA_REPORT_REJECTED, reason, &details);
}

/* GET the version check; *manifest_len > 0 when a manifest came back; *answered when
 * the controller accepted the device (200/204). */
static ota_status_t ota_agent_fetch_manifest(ota_agent_t *client, char *manifest, size_t cap,
                                             size_t *manifest_len, char *firmware_url,
                                             size_t url_cap, bool *answered) {
    *answered = false;
    char url[OTA_URL_MAX_BYTES];
    if (client->config.deployment.version_check_url[0] == '\0') {
        return OTA_ERR_CONFIG;
    }
    if (!ota_agent_build_check_url(client, url, sizeof(url))) {
        return OTA_ERR_CONFIG;
    }
    OTA_LOGI("checking %s", client->config.deployment.version_check_url);
    ota_port_http_request_t request = {
        .method = "GET",
        .url = url,
        .range_start = -1,
        .timeout_ms = client->config.http_timeout_ms,
    };
    ota_port_http_t *http = NULL;
    ota_port_http_response_t response;
    ota_status_t status = ota_agent_http_open(client, &request, &http, &response);
    if (status != OTA_OK) {
        return status;
    }
    *manifest_len = 0;
    bool header_refused = false;
    if (response.status == 200 || response.status == 204) {
        *answered = true;
        ota_config_trial_worked(client); /* before a push may start the next trial */
        if (response.device_config_too_long) {
            OTA_LOGE("X-Device-Config longer than %u bytes refused (not applied)",
                     (unsigned)(OTA_PORT_DEVICE_CONFIG_MAX_BYTES - 1));
            header_refused = true;
        } else {
            ota_config_push(client, response.device_config);
        }
        if (response.firmware_url_too_long) {
            OTA_LOGE("X-Firmware-Url longer than %u bytes refused",
                     (unsigned)(OTA_PORT_FIRMWARE_URL_MAX_BYTES - 1));
            header_refused = true;
        }
    }
    if (header_refused) {
        ota_port_http_close(http);
        return OTA_ERR_HEADER_TOO_LONG;
    }
    if (response.status == 204) {
        ota_port_http_close(http);
        return OTA_OK;
    }
    if (response.status != 200) {
        ota_port_http_close(http);
        return ota_agent_http_error(response.status);
    }
    status = ota_agent_http_read_body(http, manifest, cap, manifest_len);
    ota_port_http_close(http);
    if (status == OTA_ERR_NO_MEM) {
        *manifest_len = cap; /* over-long: refused as malformed */
        return OTA_ERR_MANIFEST_FORMAT;
    }
    if (status != OTA_OK) {
        return status;
    }
    if (*manifest_len == 0) {
        return OTA_ERR_MANIFEST_FORMAT; /* 200 without a manifest */
    }
    const char *ref = response.firmware_url[0] != '\0' ? response.firmware_url
                                                       : client->config.deployment.update_url;
    if (!ota_url_resolve(client->config.deployment.version_check_url, ref, firmware_url, url_cap)) {
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

static ota_status_t ota_agent_check_once(ota_agent_t *client) {
    client->phase = OTA_AGENT_CHECKING;
    client->check_requested = false;
    ota_report_flush(client);
    char text[OTA_MANIFEST_MAX_BYTES + 1];
    char firmware_url[OTA_URL_MAX_BYTES];
    size_t len = 0;
    bool answered = false;
    ota_status_t status = ota_agent_fetch_manifest(client, text, sizeof(text), &len, firmware_url,
                                                   sizeof(firmware_url), &answered);
    client->phase = OTA_AGENT_IDLE;
    if (!answered && ota_config_trial_failed(client)) {
        OTA_LOGW("check failed: %s", ota_status_to_reason(status));
        ota_agent_report_rejection(client, OTA_ERR_CONFIG_REVERTED, NULL);
        return status == OTA_OK ? OTA_ERR_CONFIG_REVERTED : status;
    }
    if (status == OTA_ERR_MANIFEST_FORMAT || status == OTA_ERR_HEADER_TOO_LONG ||
        status == OTA_ERR_INSECURE_URL) {
        OTA_LOGE("rejected: %s (%s)", ota_status_to_reason(status), ota_status_describe(status));
        ota_agent_report_rejection(client, status, NULL);
        return OTA_OK;
    }
    if (status != OTA_OK) {
        OTA_LOGW("check failed: %s", ota_status_to_reason(status));
        return status;
    }
    if (len == 0) {
        OTA_LOGI("up to date (running %s)", client->running_version);
        client->offered_version[0] = '\0';
        return OTA_OK;
    }
    ota_manifest_t manifest;
    status = ota_manifest_verify(text, len, client->config.trusted_keys,
                                 client->config.trusted_key_count, &manifest);
    if (status == OTA_ERR_CRYPTO) {
        OTA_LOGE("crypto backend failure verifying the manifest");
        return status;
    }
    if (status == OTA_OK) {
        memcpy(client->offered_version, manifest.version, sizeof(client->offered_version));
        client->offered_sequence = manifest.sequence;
        status = ota_agent_check_policy(client, &manifest);
    }
    if (status == OTA_OK &&
        !ota_url_scheme_allowed(firmware_url, client->config.allow_plain_http)) {
        OTA_LOGE("refusing firmware URL %s: https only", firmware_url);
        status = OTA_ERR_INSECURE_URL;
    }
    if (status == OTA_ERR_SAME_VERSION) {
        OTA_LOGI("already running %s (sequence %lu)", manifest.version,
                 (unsigned long)manifest.sequence);
        return OTA_OK;
    }
    if (status != OTA_OK) {
        bool parsed = status != OTA_ERR_MANIFEST_FORMAT && status != OTA_ERR_MANIFEST_KEY &&
                      status != OTA_ERR_MANIFEST_SIGNATURE;
        OTA_LOGE("rejected: %s (%s)", ota_status_to_reason(status), ota_status_describe(status));
        ota_agent_report_rejection(client, status, parsed ? &manifest : NULL);
        return OTA_OK;
    }
    OTA_LOGI("update available: %s -> %s (sequence %lu)", client->running_version, manifest.version,
             (unsigned long)manifest.sequence);
    status = ota_download_install(client, &manifest, firmware_url);
    return ota_agent_is_rejection(status) ? OTA_OK : status;
}

ota_status_t ota_agent_check_now(ota_agent_t *client) {
    ota_status_t status = ota_agent_check_once(client);
    client->last_check_status = status;
    return status;
}

ota_status_t ota_agent_poll(ota_agent_t *client, uint64_t now_ms) {
    bool due = client->check_requested ||
               (client->config.deployment.auto_update_enabled && now_ms >= client->next_check_ms);
    if (!due) {
        return OTA_OK;
    }
    ota_status_t status = ota_agent_check_now(client);
    uint64_t after_ms = ota_port_monotonic_ms();
    if (status == OTA_OK) {
        client->consecutive_failures = 0;
        ota_agent_schedule(client, after_ms, false);
    } else {
        client->consecutive_failures++;
        ota_agent_schedule(client, after_ms, true);
        OTA_LOGW("next check in %llu ms", (unsigned long long)(client->next_check_ms - after_ms));
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* `ota status`                                                              */
/* ------------------------------------------------------------------------ */

size_t ota_agent_status_json(const ota_agent_t *client, char *buf, size_t cap) {
    int running = ota_port_running_slot();
    int boot = ota_port_boot_slot();
    ota_img_state_t state = OTA_IMG_UNDEFINED;
    const char *state_name = "none";
    if (running != OTA_SLOT_NONE && ota_port_slot_state(running, &state) == OTA_OK) {
        state_name = ota_img_state_name(state);
    }
    char report[512];
    ota_report_json(client->config.deployment.device_id, &client->report, report, sizeof(report));
    ota_json_t json;
    ota_json_begin(&json, buf, cap);
    ota_json_string(&json, "phase", OTA_AGENT_PHASE_NAMES[client->phase]);
    ota_json_string(&json, "version", client->running_version);
    ota_json_u64(&json, "secure_version", client->running_secure_version);
    ota_json_i64(&json, "running_slot", running);
    ota_json_i64(&json, "boot_slot", boot);
    ota_json_string(&json, "img_state", state_name);
    ota_json_u64(&json, "highest_sequence", client->highest_sequence);
    ota_json_string(&json, "offered_version", client->offered_version);
    ota_json_string(&json, "last_check", ota_status_to_reason(client->last_check_status));
    ota_json_u64(&json, "consecutive_failures", client->consecutive_failures);
    ota_json_u64(&json, "download_bytes_written", client->download_bytes_written);
    ota_json_u64(&json, "download_size", client->download_size_bytes);
    ota_json_string(&json, "version_check_url", client->config.deployment.version_check_url);
    ota_json_u64(&json, "check_interval_sec", client->config.deployment.check_interval_sec);
    ota_json_bool(&json, "auto_update_enabled", client->config.deployment.auto_update_enabled);
    ota_json_raw(&json, "last_report", report);
    ota_json_bool(&json, "last_report_acked", client->report.acked);
    return ota_json_end(&json);
}
