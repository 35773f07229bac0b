/* ota_store.c — the client's persisted records as "key=value\n" text in the KV store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_port.h"

typedef struct {
    char buf[OTA_KV_RECORD_MAX_BYTES];
    size_t len;
    bool overflow;
} ota_record_t;

static void ota_record_put(ota_record_t *rec, const char *key, const char *value) {
    int n = snprintf(rec->buf + rec->len, sizeof(rec->buf) - rec->len, "%s=%s\n", key, value);
    if (n < 0 || (size_t)n >= sizeof(rec->buf) - rec->len) {
        rec->overflow = true;
        return;
    }
    rec->len += (size_t)n;
}

static void ota_record_put_u32(ota_record_t *rec, const char *key, uint32_t value) {
    char num[12];
    snprintf(num, sizeof(num), "%lu", (unsigned long)value);
    ota_record_put(rec, key, num);
}

static void ota_record_put_i32(ota_record_t *rec, const char *key, int value) {
    char num[12];
    snprintf(num, sizeof(num), "%d", value);
    ota_record_put(rec, key, num);
}

static ota_status_t ota_record_save(const char *kv_key, const ota_record_t *rec) {
    if (rec->overflow) {
        return OTA_ERR_NO_MEM;
    }
    return ota_port_kv_set(kv_key, rec->buf, rec->len);
}

static ota_status_t ota_record_load(const char *kv_key, ota_record_t *rec) {
    size_t len = sizeof(rec->buf) - 1;
    ota_status_t status = ota_port_kv_get(kv_key, rec->buf, &len);
    if (status != OTA_OK) {
        return status;
    }
    rec->buf[len] = '\0';
    rec->len = len;
    rec->overflow = false;
    return OTA_OK;
}

/* Value of `key` in the record; false when absent or too long. */
static bool ota_record_get(const ota_record_t *rec, const char *key, char *out, size_t cap) {
    size_t key_len = strlen(key);
    const char *line = rec->buf;
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t line_len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (line_len > key_len && memcmp(line, key, key_len) == 0 && line[key_len] == '=') {
            size_t value_len = line_len - key_len - 1;
            if (value_len + 1 > cap) {
                return false;
            }
            memcpy(out, line + key_len + 1, value_len);
            out[value_len] = '\0';
            return true;
        }
        if (line_len == key_len + 1 && memcmp(line, key, key_len) == 0 && line[key_len] == '=') {
            out[0] = '\0';
            return cap > 0;
        }
        line += line_len + (nl != NULL ? 1 : 0);
    }
    return false;
}

static bool ota_record_get_u32(const ota_record_t *rec, const char *key, uint32_t *out) {
    char text[16];
    if (!ota_record_get(rec, key, text, sizeof(text)) || text[0] == '\0') {
        return false;
    }
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end != '\0' || value > UINT32_MAX || text[0] == '-') {
        return false;
    }
    *out = (uint32_t)value;
    return true;
}

static bool ota_record_get_int(const ota_record_t *rec, const char *key, int *out) {
    char text[16];
    if (!ota_record_get(rec, key, text, sizeof(text)) || text[0] == '\0') {
        return false;
    }
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (*end != '\0' || value < -1 || value > 64) {
        return false;
    }
    *out = (int)value;
    return true;
}

ota_status_t ota_store_save_download(const ota_download_record_t *record) {
    ota_record_t rec = {.len = 0};
    char hex[65];
    ota_manifest_hex_encode(record->sha256, sizeof(record->sha256), hex);
    ota_record_put(&rec, "sha256", hex);
    ota_record_put_u32(&rec, "size", record->size_bytes);
    ota_record_put_i32(&rec, "slot", record->slot);
    ota_record_put_u32(&rec, "written", record->bytes_written);
    ota_record_put_u32(&rec, "sequence", record->sequence);
    return ota_record_save(OTA_KV_DOWNLOAD, &rec);
}

ota_status_t ota_store_load_download(ota_download_record_t *record) {
    ota_record_t rec;
    ota_status_t status = ota_record_load(OTA_KV_DOWNLOAD, &rec);
    if (status != OTA_OK) {
        return status;
    }
    char hex[65];
    memset(record, 0, sizeof(*record));
    bool ok = ota_record_get(&rec, "sha256", hex, sizeof(hex)) &&
              ota_manifest_hex_decode(hex, strlen(hex), record->sha256, sizeof(record->sha256)) &&
              ota_record_get_u32(&rec, "size", &record->size_bytes) &&
              ota_record_get_int(&rec, "slot", &record->slot) &&
              ota_record_get_u32(&rec, "written", &record->bytes_written) &&
              ota_record_get_u32(&rec, "sequence", &record->sequence);
    return ok ? OTA_OK : OTA_ERR_NOT_FOUND;
}

ota_status_t ota_store_save_pending(const ota_pending_record_t *record) {
    ota_record_t rec = {.len = 0};
    ota_record_put(&rec, "target", record->target_version);
    ota_record_put(&rec, "sha256", record->target_sha256);
    ota_record_put_u32(&rec, "sequence", record->sequence);
    ota_record_put_i32(&rec, "slot", record->slot);
    ota_record_put(&rec, "previous", record->previous_version);
    return ota_record_save(OTA_KV_PENDING, &rec);
}

ota_status_t ota_store_load_pending(ota_pending_record_t *record) {
    ota_record_t rec;
    ota_status_t status = ota_record_load(OTA_KV_PENDING, &rec);
    if (status != OTA_OK) {
        return status;
    }
    memset(record, 0, sizeof(*record));
    bool ok =
        ota_record_get(&rec, "target", record->target_version, sizeof(record->target_version)) &&
        ota_record_get(&rec, "sha256", record->target_sha256, sizeof(record->target_sha256)) &&
        ota_record_get_u32(&rec, "sequence", &record->sequence) &&
        ota_record_get_int(&rec, "slot", &record->slot) &&
        ota_record_get(&rec, "previous", record->previous_version,
                       sizeof(record->previous_version));
    return ok ? OTA_OK : OTA_ERR_NOT_FOUND;
}

ota_status_t ota_store_save_report(const ota_agent_report_t *report) {
    ota_record_t rec = {.len = 0};
    ota_record_put_u32(&rec, "seq", report->seq);
    ota_record_put(&rec, "state", report->state);
    ota_record_put(&rec, "reason", report->reason);
    ota_record_put(&rec, "version", report->version);
    ota_record_put(&rec, "target_version", report->target_version);
    ota_record_put(&rec, "target_sha256", report->target_sha256);
    ota_record_put_u32(&rec, "manifest_sequence", report->manifest_sequence);
    ota_record_put_u32(&rec, "bytes_written", report->bytes_written);
    ota_record_put_u32(&rec, "acked", report->acked ? 1u : 0u);
    return ota_record_save(OTA_KV_REPORT, &rec);
}

ota_status_t ota_store_load_report(ota_agent_report_t *report) {
    ota_record_t rec;
    ota_status_t status = ota_record_load(OTA_KV_REPORT, &rec);
    if (status != OTA_OK) {
        return status;
    }
    memset(report, 0, sizeof(*report));
    uint32_t acked = 0;
    bool ok = ota_record_get_u32(&rec, "seq", &report->seq) &&
              ota_record_get(&rec, "state", report->state, sizeof(report->state)) &&
              ota_record_get(&rec, "reason", report->reason, sizeof(report->reason)) &&
              ota_record_get(&rec, "version", report->version, sizeof(report->version)) &&
              ota_record_get(&rec, "target_version", report->target_version,
                             sizeof(report->target_version)) &&
              ota_record_get(&rec, "target_sha256", report->target_sha256,
                             sizeof(report->target_sha256)) &&
              ota_record_get_u32(&rec, "manifest_sequence", &report->manifest_sequence) &&
              ota_record_get_u32(&rec, "bytes_written", &report->bytes_written) &&
              ota_record_get_u32(&rec, "acked", &acked);
    report->acked = acked != 0;
    return ok ? OTA_OK : OTA_ERR_NOT_FOUND;
}

ota_status_t ota_store_save_config_prev(const ota_config_prev_record_t *record) {
    ota_record_t rec = {.len = 0};
    ota_record_put(&rec, "version_check_url", record->version_check_url);
    ota_record_put(&rec, "update_url", record->update_url);
    ota_record_put_u32(&rec, "mask", record->mask);
    ota_record_put_u32(&rec, "failures", record->failures);
    return ota_record_save(OTA_KV_CONFIG_PREV, &rec);
}

ota_status_t ota_store_load_config_prev(ota_config_prev_record_t *record) {
    ota_record_t rec;
    ota_status_t status = ota_record_load(OTA_KV_CONFIG_PREV, &rec);
    if (status != OTA_OK) {
        return status;
    }
    memset(record, 0, sizeof(*record));
    bool ok = ota_record_get(&rec, "version_check_url", record->version_check_url,
                             sizeof(record->version_check_url)) &&
              ota_record_get(&rec, "update_url", record->update_url, sizeof(record->update_url)) &&
              ota_record_get_u32(&rec, "mask", &record->mask) &&
              ota_record_get_u32(&rec, "failures", &record->failures);
    return ok ? OTA_OK : OTA_ERR_NOT_FOUND;
}

ota_status_t ota_store_load_u32(const char *key, uint32_t *value) {
    ota_record_t rec;
    ota_status_t status = ota_record_load(key, &rec);
    if (status != OTA_OK) {
        return status;
    }
    return ota_record_get_u32(&rec, "value", value) ? OTA_OK : OTA_ERR_NOT_FOUND;
}

ota_status_t ota_store_save_u32(const char *key, uint32_t value) {
    ota_record_t rec = {.len = 0};
    ota_record_put_u32(&rec, "value", value);
    return ota_record_save(key, &rec);
}

ota_status_t ota_store_load_text(const char *key, char *buf, size_t cap) {
    if (cap == 0) {
        return OTA_ERR_INVALID_ARG;
    }
    size_t len = cap - 1;
    ota_status_t status = ota_port_kv_get(key, buf, &len);
    if (status != OTA_OK) {
        return status;
    }
    buf[len] = '\0';
    return OTA_OK;
}

ota_status_t ota_store_save_text(const char *key, const char *text) {
    return ota_port_kv_set(key, text, strlen(text));
}

ota_status_t ota_store_erase(const char *key) {
    ota_status_t status = ota_port_kv_erase(key);
    return status == OTA_ERR_NOT_FOUND ? OTA_OK : status;
}

ota_status_t ota_store_save_retry(const ota_retry_record_t *record) {
    ota_record_t rec = {.len = 0};
    ota_record_put(&rec, "sha256", record->sha256);
    ota_record_put_u32(&rec, "sequence", record->sequence);
    ota_record_put_u32(&rec, "installs", record->installs);
    ota_record_put_u32(&rec, "allowed", record->allowed ? 1u : 0u);
    return ota_record_save(OTA_KV_RETRY, &rec);
}

ota_status_t ota_store_load_retry(ota_retry_record_t *record) {
    ota_record_t rec;
    ota_status_t status = ota_record_load(OTA_KV_RETRY, &rec);
    if (status != OTA_OK) {
        return status;
    }
    memset(record, 0, sizeof(*record));
    uint32_t allowed = 0;
    bool ok = ota_record_get(&rec, "sha256", record->sha256, sizeof(record->sha256)) &&
              ota_record_get_u32(&rec, "sequence", &record->sequence) &&
              ota_record_get_u32(&rec, "installs", &record->installs) &&
              ota_record_get_u32(&rec, "allowed", &allowed);
    record->allowed = allowed != 0;
    return ok ? OTA_OK : OTA_ERR_NOT_FOUND;
}

/* The record for this image (a fresh one when it names another image). */
static void ota_retry_load_for(const char *sha256_hex, uint32_t sequence,
                               ota_retry_record_t *record) {
    if (ota_store_load_retry(record) == OTA_OK && strcmp(record->sha256, sha256_hex) == 0 &&
        record->sequence == sequence) {
        return;
    }
    memset(record, 0, sizeof(*record));
    snprintf(record->sha256, sizeof(record->sha256), "%s", sha256_hex);
    record->sequence = sequence;
}

void ota_retry_note_install(const char *sha256_hex, uint32_t sequence) {
    ota_retry_record_t record;
    ota_retry_load_for(sha256_hex, sequence, &record);
    record.installs++;
    record.allowed = false;
    ota_store_save_retry(&record);
}

void ota_retry_set_allowed(const char *sha256_hex, uint32_t sequence, bool allowed) {
    ota_retry_record_t record;
    ota_retry_load_for(sha256_hex, sequence, &record);
    if (record.installs == 0) {
        record.installs = 1; /* installed before the record could be written */
    }
    record.allowed = allowed;
    ota_store_save_retry(&record);
}
