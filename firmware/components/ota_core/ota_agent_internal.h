/*
 * ota_agent_internal.h — what the ota_agent*.c files share: persisted
 * records (KV), status reports, the download, and small HTTP helpers.
 * Private to the core (and its unit tests).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_agent.h"
#include "ota_manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

/* KV keys (NVS namespace "csi_ota", ≤ 15 characters). Values are "key=value\n" text. */
#define OTA_KV_REPORT "report"
#define OTA_KV_HIGHEST_SEQ "highest_seq"
#define OTA_KV_DOWNLOAD "download"
#define OTA_KV_PENDING "pending"
#define OTA_KV_CONFIG "config"
#define OTA_KV_FAIL_NEXT "fail_next"
#define OTA_KV_RETRY "retry"
#define OTA_KV_FALLBACK "fallback" /* boot slot of the last reported fallback */
#define OTA_KV_CONFIG_PREV "config_prev"
#define OTA_KV_RECORD_MAX_BYTES 768

#define OTA_STATUS_PATH "/api/ota/status"
#define OTA_URL_MAX_BYTES 768

/* Failed checks with a pushed check URL before the last working one comes back. */
#define OTA_CONFIG_TRIAL_MAX_FAILURES 3u

/* Report states (docs/device-protocol.md). */
#define OTA_REPORT_DOWNLOADING "downloading"
#define OTA_REPORT_DOWNLOADED "downloaded"
#define OTA_REPORT_PENDING_VERIFY "pending_verify"
#define OTA_REPORT_SUCCESS "success"
#define OTA_REPORT_REJECTED "rejected"
#define OTA_REPORT_FAILED "failed"
#define OTA_REPORT_ROLLED_BACK "rolled_back"

/* Bits of ota_agent_t.config_override_mask. */
#define OTA_CONFIG_UPDATE_URL (1u << 0)
#define OTA_CONFIG_VERSION_CHECK_URL (1u << 1)
#define OTA_CONFIG_CHECK_INTERVAL (1u << 2)
#define OTA_CONFIG_AUTO_UPDATE (1u << 3)
#define OTA_CONFIG_AUTH_TOKEN (1u << 4)

/* A download in progress, saved every persist_interval_bytes and on failure. */
typedef struct {
    uint8_t sha256[32];
    uint32_t size_bytes;
    int slot;
    uint32_t bytes_written;
    uint32_t sequence;
} ota_download_record_t;

/* Saved just before the boot partition is switched to a new image. */
typedef struct {
    char target_version[32];
    char target_sha256[65];
    uint32_t sequence;
    int slot;
    char previous_version[32];
} ota_pending_record_t;

/* Re-installing an already accepted release after its boot was interrupted
 * (bootloader abandoned it or the switch never happened): allowed while
 * `allowed` and installs <= retry_count. A failed self-test clears `allowed`. */
typedef struct {
    char sha256[65];
    uint32_t sequence;
    uint32_t installs; /* times this image was set as boot partition */
    bool allowed;
} ota_retry_record_t;

/* The last working URLs, kept while pushed ones are on trial (OTA_KV_CONFIG_PREV). */
typedef struct {
    char version_check_url[256];
    char update_url[256];
    uint32_t mask;     /* override bits of these two fields before the push */
    uint32_t failures; /* failed checks with the URLs on trial */
} ota_config_prev_record_t;

/* What a report is about (target_* empty when no manifest is involved). */
typedef struct {
    const char *version; /* NULL: the running version */
    const char *target_version;
    const char *target_sha256;
    uint32_t manifest_sequence;
    uint32_t bytes_written;
} ota_report_details_t;

/* ---- ota_store.c: records in the KV store ---- */
ota_status_t ota_store_load_download(ota_download_record_t *record);
ota_status_t ota_store_save_download(const ota_download_record_t *record);
ota_status_t ota_store_load_pending(ota_pending_record_t *record);
ota_status_t ota_store_save_pending(const ota_pending_record_t *record);
ota_status_t ota_store_load_report(ota_agent_report_t *report);
ota_status_t ota_store_load_retry(ota_retry_record_t *record);
ota_status_t ota_store_save_retry(const ota_retry_record_t *record);
/* Updates the retry record for image sha/sequence: counts an install (installs + 1) or
 * sets `allowed`. */
void ota_retry_note_install(const char *sha256_hex, uint32_t sequence);
void ota_retry_set_allowed(const char *sha256_hex, uint32_t sequence, bool allowed);
ota_status_t ota_store_save_report(const ota_agent_report_t *report);
ota_status_t ota_store_load_config_prev(ota_config_prev_record_t *record);
ota_status_t ota_store_save_config_prev(const ota_config_prev_record_t *record);
ota_status_t ota_store_load_u32(const char *key, uint32_t *value);
ota_status_t ota_store_save_u32(const char *key, uint32_t value);
ota_status_t ota_store_load_text(const char *key, char *buf, size_t cap);
ota_status_t ota_store_save_text(const char *key, const char *text);
/* Erase; a missing key is fine. */
ota_status_t ota_store_erase(const char *key);

/* ---- ota_report.c: status reports ---- */
/* The POST body of a report. Returns the length needed (like snprintf). */
size_t ota_report_json(const char *device_id, const ota_agent_report_t *report, char *buf,
                       size_t cap);
/* New report (seq + 1), persisted, then sent (failure to send keeps it for the next check). */
ota_status_t ota_report(ota_agent_t *client, const char *state, ota_status_t reason,
                        const ota_report_details_t *details);
/* Sends the last report again when it is not acknowledged yet. */
ota_status_t ota_report_flush(ota_agent_t *client);

/* ---- ota_download.c: stream, verify, install ---- */
/* Downloads and installs; on success sets the boot slot, reports and reboots
 * (does not return). Returns the failure otherwise (already reported). */
ota_status_t ota_download_install(ota_agent_t *client, const ota_manifest_t *manifest,
                                  const char *firmware_url);

/* ---- ota_config.c: X-Device-Config and persisted overrides ---- */
/* Applies a form-encoded config string; returns the bits it changed. URLs must be
 * https:// (http:// too when allow_plain_http). */
uint32_t ota_config_apply_form(ota_deployment_config_t *config, const char *form,
                               bool allow_plain_http);
/* Persists the overridden fields (client->config_override_mask) as OTA_KV_CONFIG. */
ota_status_t ota_config_persist_overrides(ota_agent_t *client);
/* Applies an X-Device-Config push and persists it. A new version_check_url or
 * update_url goes on trial: the last working pair is saved first. */
void ota_config_push(ota_agent_t *client, const char *form);
/* A check with the URLs on trial was answered (kept, trial over). */
void ota_config_trial_worked(ota_agent_t *client);
/* A check with the URLs on trial failed; after OTA_CONFIG_TRIAL_MAX_FAILURES the last
 * working URLs come back (persisted). True when they did. */
bool ota_config_trial_failed(ota_agent_t *client);
/* Form string of the fields named by mask (for persisting overrides). */
bool ota_config_to_form(const ota_deployment_config_t *config, uint32_t mask, char *out,
                        size_t cap);

/* ---- helpers ---- */
/* ota_port_http_open() with the client's URL policy: https only (unless
 * allow_plain_http) and the bearer token only to the origin of version_check_url
 * (request->bearer_token is set here). */
ota_status_t ota_agent_http_open(const ota_agent_t *client, ota_port_http_request_t *request,
                                 ota_port_http_t **http, ota_port_http_response_t *response);
/* Maps an HTTP status to an error (401/403 → HTTP_AUTH, else HTTP_STATUS). */
ota_status_t ota_agent_http_error(int http_status);
/* Reads the whole body into buf (NUL-terminated); OTA_ERR_NO_MEM when it does not fit. */
ota_status_t ota_agent_http_read_body(ota_port_http_t *http, char *buf, size_t cap, size_t *len);
/* The origin of version_check_url + path. */
bool ota_agent_controller_url(const ota_agent_t *client, const char *path, char *out, size_t cap);
/* True for failures a retry cannot fix (image/manifest refused). */
bool ota_agent_is_rejection(ota_status_t status);

#ifdef __cplusplus
}
#endif
