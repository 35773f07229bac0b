/* ota_download.c — stream the image with Range resume, verify, install, reboot. */
#include <stdlib.h>
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_backoff.h"
#include "ota_image_header.h"
#include "ota_log.h"

typedef struct {
    ota_agent_t *client;
    const ota_manifest_t *manifest;
    const char *url;
    int slot;
    uint8_t *chunk;
    size_t chunk_cap;
    ota_port_sha256_t *sha;
    ota_port_update_t *update;
    ota_port_http_t *http;
    uint32_t written;      /* image bytes on flash and in the hash */
    uint32_t last_persist; /* written at the last save of the download record */
} ota_download_t;

static void ota_download_release(ota_download_t *dl) {
    if (dl->http != NULL) {
        ota_port_http_close(dl->http);
        dl->http = NULL;
    }
    if (dl->update != NULL) {
        ota_port_update_abort(dl->update);
        dl->update = NULL;
    }
    if (dl->sha != NULL) {
        ota_port_sha256_discard(dl->sha);
        dl->sha = NULL;
    }
}

static ota_status_t ota_download_persist(ota_download_t *dl) {
    ota_download_record_t record;
    memcpy(record.sha256, dl->manifest->sha256, sizeof(record.sha256));
    record.size_bytes = dl->manifest->size_bytes;
    record.slot = dl->slot;
    record.bytes_written = dl->written;
    record.sequence = dl->manifest->sequence;
    ota_status_t status = ota_store_save_download(&record);
    if (status == OTA_OK) {
        dl->last_persist = dl->written;
    } else {
        OTA_LOGW("could not save download state: %s", ota_status_to_str(status));
    }
    return status;
}

/* Header checks before the first write: magic, this chip, and the manifest's claims. */
static ota_status_t ota_download_check_header(const ota_download_t *dl, const uint8_t *data,
                                              size_t len) {
    ota_image_header_t header;
    ota_status_t status = ota_image_header_parse(data, len, &header);
    if (status != OTA_OK) {
        return status;
    }
    uint16_t chip_id = 0;
    uint16_t chip_rev_full = 0;
    ota_port_chip_info(&chip_id, &chip_rev_full);
    status = ota_image_header_check_chip(&header, chip_id, chip_rev_full);
    if (status != OTA_OK) {
        return status;
    }
    const ota_manifest_t *m = dl->manifest;
    if (header.chip_id != m->chip_id || header.min_chip_rev_full != m->min_chip_rev_full ||
        header.max_chip_rev_full != m->max_chip_rev_full) {
        return OTA_ERR_IMAGE_HEADER;
    }
    return OTA_OK;
}

/* Resume point from the saved record: re-hash what is already in the slot so
 * one SHA-256 covers the whole image. Returns the offset (0: start over). */
static uint32_t ota_download_resume_point(ota_download_t *dl) {
    ota_download_record_t record;
    const ota_manifest_t *m = dl->manifest;
    if (ota_store_load_download(&record) != OTA_OK) {
        return 0;
    }
    if (memcmp(record.sha256, m->sha256, sizeof(record.sha256)) != 0 ||
        record.size_bytes != m->size_bytes || record.slot != dl->slot ||
        record.bytes_written > m->size_bytes || record.bytes_written < OTA_IMAGE_HEADER_BYTES) {
        ota_store_erase(OTA_KV_DOWNLOAD);
        return 0;
    }
    if (ota_port_sha256_begin(&dl->sha) != OTA_OK) {
        return 0;
    }
    uint32_t offset = 0;
    while (offset < record.bytes_written) {
        size_t n = dl->chunk_cap;
        if (n > record.bytes_written - offset) {
            n = record.bytes_written - offset;
        }
        if (ota_port_slot_read(dl->slot, offset, dl->chunk, n) != OTA_OK ||
            (offset == 0 && ota_download_check_header(dl, dl->chunk, n) != OTA_OK) ||
            ota_port_sha256_update(dl->sha, dl->chunk, n) != OTA_OK) {
            ota_port_sha256_discard(dl->sha);
            dl->sha = NULL;
            ota_store_erase(OTA_KV_DOWNLOAD);
            return 0;
        }
        offset += (uint32_t)n;
    }
    dl->written = offset;
    dl->last_persist = offset;
    return offset;
}

/* Hash + write n bytes at dl->written. */
static ota_status_t ota_download_consume(ota_download_t *dl, const uint8_t *data, size_t n) {
    if (n > dl->manifest->size_bytes - dl->written) {
        return OTA_ERR_IMAGE_SIZE; /* more bytes than the manifest promised */
    }
    ota_status_t status = ota_port_sha256_update(dl->sha, data, n);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_update_write(dl->update, data, n);
    if (status != OTA_OK) {
        return status;
    }
    dl->written += (uint32_t)n;
    dl->client->download_bytes_written = dl->written;
    if (dl->written - dl->last_persist >= dl->client->config.persist_interval_bytes) {
        ota_download_persist(dl);
    }
    return OTA_OK;
}

/* Opens the firmware URL (with Range when resuming) and decides how to continue. */
static ota_status_t ota_download_open(ota_download_t *dl, uint32_t *offset) {
    const ota_agent_t *client = dl->client;
    ota_port_http_request_t request = {
        .method = "GET",
        .url = dl->url,
        .range_start = *offset > 0 ? (int64_t)*offset : -1,
        .timeout_ms = client->config.http_timeout_ms,
    };
    ota_port_http_response_t response;
    ota_status_t status = ota_agent_http_open(client, &request, &dl->http, &response);
    if (status != OTA_OK) {
        return status;
    }
    uint32_t size = dl->manifest->size_bytes;
    if (*offset > 0 && response.status == 206) {
        if (response.content_range_start != (int64_t)*offset ||
            response.content_range_total != (int64_t)size ||
            (response.content_length >= 0 &&
             response.content_length != (int64_t)(size - *offset))) {
            OTA_LOGW("bad Content-Range (start %lld, total %lld); restarting from 0",
                     (long long)response.content_range_start,
                     (long long)response.content_range_total);
            ota_store_erase(OTA_KV_DOWNLOAD);
            return OTA_ERR_HTTP_RANGE;
        }
        OTA_LOGI("resuming download at %lu", (unsigned long)*offset);
        return ota_port_update_resume(dl->slot, size, *offset, &dl->update);
    }
    if (*offset > 0 && response.status == 200) {
        OTA_LOGW("server ignored Range; restarting from 0");
        ota_port_sha256_discard(dl->sha);
        dl->sha = NULL;
        *offset = 0;
        dl->written = 0;
        dl->last_persist = 0;
    }
    if (*offset > 0 && response.status == 416) {
        ota_store_erase(OTA_KV_DOWNLOAD);
        return OTA_ERR_HTTP_RANGE;
    }
    if (response.status != 200) {
        return ota_agent_http_error(response.status);
    }
    if (response.content_length >= 0 && response.content_length != (int64_t)size) {
        return OTA_ERR_IMAGE_SIZE;
    }
    return OTA_OK;
}

/* First bytes of a fresh download: header check, then esp_ota_begin, then write them. */
static ota_status_t ota_download_start_fresh(ota_download_t *dl) {
    size_t fill = 0;
    while (fill < OTA_IMAGE_HEADER_BYTES) {
        size_t n = 0;
        ota_status_t status =
            ota_port_http_read(dl->http, dl->chunk + fill, dl->chunk_cap - fill, &n);
        if (status != OTA_OK) {
            return status;
        }
        if (n == 0) {
            return fill == dl->manifest->size_bytes ? OTA_ERR_IMAGE_HEADER : OTA_ERR_HTTP_TRUNCATED;
        }
        fill += n;
    }
    ota_status_t status = ota_download_check_header(dl, dl->chunk, fill);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_sha256_begin(&dl->sha);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_update_begin(dl->slot, dl->manifest->size_bytes, &dl->update);
    if (status != OTA_OK) {
        return status;
    }
    return ota_download_consume(dl, dl->chunk, fill);
}

/* One attempt: resume or start, stream to the end. OTA_OK leaves dl->update
 * open with the whole image written and dl->sha covering it. */
static ota_status_t ota_download_attempt(ota_download_t *dl) {
    dl->written = 0;
    dl->last_persist = 0;
    uint32_t offset = ota_download_resume_point(dl);
    uint32_t size = dl->manifest->size_bytes;
    ota_status_t status = OTA_OK;
    if (offset == size) { /* everything already on flash (reset before install) */
        OTA_LOGI("resuming download at %lu", (unsigned long)offset);
        return ota_port_update_resume(dl->slot, size, offset, &dl->update);
    }
    status = ota_download_open(dl, &offset);
    if (status == OTA_OK && offset == 0) {
        status = ota_download_start_fresh(dl);
    }
    while (status == OTA_OK && dl->written < size) {
        size_t n = 0;
        status = ota_port_http_read(dl->http, dl->chunk, dl->chunk_cap, &n);
        if (status == OTA_OK && n == 0) {
            status = OTA_ERR_HTTP_TRUNCATED;
        } else if (status == OTA_OK) {
            status = ota_download_consume(dl, dl->chunk, n);
        }
    }
    if (status == OTA_OK) { /* the body must end exactly at the manifest size */
        size_t n = 0;
        uint8_t extra[16];
        status = ota_port_http_read(dl->http, extra, sizeof(extra), &n);
        if (status == OTA_OK && n > 0) {
            status = OTA_ERR_IMAGE_SIZE;
        } else {
            status = OTA_OK; /* a read error after the last byte does not matter */
        }
    }
    if (dl->http != NULL) {
        ota_port_http_close(dl->http);
        dl->http = NULL;
    }
    if (status != OTA_OK && !ota_agent_is_rejection(status) && dl->update != NULL &&
        dl->written > dl->last_persist) {
        ota_download_persist(dl); /* exact resume point for the next attempt */
    }
    return status;
}

/* Digest, esp_ota_end, pending record, set boot, accept the sequence. */
static ota_status_t ota_download_finish(ota_download_t *dl) {
    const ota_manifest_t *m = dl->manifest;
    uint8_t digest[32];
    ota_status_t status = ota_port_sha256_finish(dl->sha, digest);
    dl->sha = NULL;
    if (status != OTA_OK) {
        return status;
    }
    if (memcmp(digest, m->sha256, sizeof(digest)) != 0) {
        return OTA_ERR_IMAGE_DIGEST;
    }
    OTA_LOGI("download complete: %lu bytes sha256 ok", (unsigned long)m->size_bytes);
    status = ota_port_update_end(dl->update);
    dl->update = NULL;
    if (status != OTA_OK) {
        return status == OTA_ERR_IMAGE_INVALID ? status : OTA_ERR_IMAGE_INVALID;
    }
    ota_pending_record_t pending;
    memset(&pending, 0, sizeof(pending));
    memcpy(pending.target_version, m->version, sizeof(pending.target_version));
    memcpy(pending.target_sha256, m->sha256_hex, sizeof(pending.target_sha256));
    pending.sequence = m->sequence;
    pending.slot = dl->slot;
    memcpy(pending.previous_version, dl->client->running_version, sizeof(pending.previous_version));
    status = ota_store_save_pending(&pending);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_set_boot_slot(dl->slot);
    if (status != OTA_OK) {
        ota_store_erase(OTA_KV_PENDING);
        return status == OTA_ERR_IMAGE_INVALID ? status : OTA_ERR_SET_BOOT;
    }
    /* Accepted from here on: a rollback must not make this sequence usable again. */
    dl->client->highest_sequence = m->sequence;
    ota_store_save_u32(OTA_KV_HIGHEST_SEQ, m->sequence);
    ota_retry_note_install(m->sha256_hex, m->sequence);
    ota_store_erase(OTA_KV_DOWNLOAD);
    return OTA_OK;
}

ota_status_t ota_download_install(ota_agent_t *client, const ota_manifest_t *manifest,
                                  const char *firmware_url) {
    ota_download_t dl;
    memset(&dl, 0, sizeof(dl));
    dl.client = client;
    dl.manifest = manifest;
    dl.url = firmware_url;
    dl.slot = ota_port_next_update_slot();
    ota_report_details_t details = {
        .target_version = manifest->version,
        .target_sha256 = manifest->sha256_hex,
        .manifest_sequence = manifest->sequence,
    };
    if (dl.slot == OTA_SLOT_NONE) {
        ota_report(client, OTA_REPORT_FAILED, OTA_ERR_NO_UPDATE_SLOT, &details);
        return OTA_ERR_NO_UPDATE_SLOT;
    }
    dl.chunk_cap = client->config.chunk_size_bytes;
    dl.chunk = malloc(dl.chunk_cap);
    if (dl.chunk == NULL) {
        return OTA_ERR_NO_MEM;
    }
    client->phase = OTA_AGENT_DOWNLOADING;
    client->download_size_bytes = manifest->size_bytes;
    client->download_bytes_written = 0;
    ota_download_record_t record;
    if (ota_store_load_download(&record) == OTA_OK &&
        memcmp(record.sha256, manifest->sha256, sizeof(record.sha256)) == 0) {
        details.bytes_written = record.bytes_written;
    }
    OTA_LOGI("downloading %s (%lu bytes) to slot %d", firmware_url,
             (unsigned long)manifest->size_bytes, dl.slot);
    ota_report(client, OTA_REPORT_DOWNLOADING, OTA_OK, &details);

    ota_status_t status = OTA_OK;
    for (uint32_t attempt = 0; attempt <= client->config.retry_count; attempt++) {
        if (attempt > 0) {
            uint32_t delay_ms = ota_backoff_delay_ms(client->config.backoff_initial_ms,
                                                     client->config.backoff_max_ms, attempt - 1);
            OTA_LOGW("download failed (%s) at %lu bytes; retry %lu of %lu in %lu ms",
                     ota_status_to_reason(status), (unsigned long)dl.written,
                     (unsigned long)attempt, (unsigned long)client->config.retry_count,
                     (unsigned long)delay_ms);
            ota_port_sleep_ms(delay_ms);
        }
        status = ota_download_attempt(&dl);
        if (status == OTA_OK) {
            client->phase = OTA_AGENT_VERIFYING;
            status = ota_download_finish(&dl);
        }
        ota_download_release(&dl);
        if (status == OTA_OK || ota_agent_is_rejection(status) || status == OTA_ERR_SET_BOOT) {
            break;
        }
    }
    free(dl.chunk);
    client->phase = OTA_AGENT_IDLE;
    details.bytes_written = dl.written;
    if (status != OTA_OK) {
        bool rejected = ota_agent_is_rejection(status);
        if (rejected) {
            ota_store_erase(OTA_KV_DOWNLOAD); /* the bytes are useless: start over next time */
            OTA_LOGE("rejected: %s (%s)", ota_status_to_reason(status),
                     ota_status_describe(status));
        } else {
            OTA_LOGE("update failed: %s (%s)", ota_status_to_reason(status),
                     ota_status_describe(status));
        }
        ota_report(client, rejected ? OTA_REPORT_REJECTED : OTA_REPORT_FAILED, status, &details);
        return status;
    }
    ota_report(client, OTA_REPORT_DOWNLOADED, OTA_OK, &details);
    OTA_LOGI("boot partition set to slot %d; rebooting into %s", dl.slot, manifest->version);
    ota_port_reboot();
    return OTA_OK; /* not reached on a real device */
}
