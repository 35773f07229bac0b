/*
 * fuzz_port_stub.c — a do-nothing ota_port.h for the fuzz targets, so they link the core
 * alone. The KV store holds one value for every key: what the target put there
 * (fuzz_port_kv_load), which is how the KV-record parsers get fuzz bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "ota_port.h"

static const uint8_t *fuzz_kv_data;
static size_t fuzz_kv_len;

void fuzz_port_kv_load(const uint8_t *data, size_t len) {
    fuzz_kv_data = data;
    fuzz_kv_len = len;
}

char *fuzz_strndup(const uint8_t *data, size_t len) {
    char *s = malloc(len + 1);
    if (s != NULL) {
        memcpy(s, data, len);
        s[len] = '\0';
    }
    return s;
}

int ota_port_running_slot(void) {
    return 0;
}
int ota_port_boot_slot(void) {
    return 0;
}
int ota_port_next_update_slot(void) {
    return 1;
}
ota_status_t ota_port_slot_size(int slot, uint32_t *size_bytes) {
    (void)slot;
    *size_bytes = 0x140000;
    return OTA_OK;
}
ota_status_t ota_port_slot_state(int slot, ota_img_state_t *state) {
    (void)slot;
    *state = OTA_IMG_VALID;
    return OTA_OK;
}
ota_status_t ota_port_slot_app_desc(int slot, ota_app_desc_t *desc) {
    (void)slot;
    memset(desc, 0, sizeof(*desc));
    return OTA_OK;
}
ota_status_t ota_port_slot_read(int slot, uint32_t offset_bytes, void *buf, size_t len) {
    (void)slot;
    (void)offset_bytes;
    memset(buf, 0xFF, len);
    return OTA_OK;
}
ota_status_t ota_port_update_begin(int slot, uint32_t image_size_bytes, ota_port_update_t **out) {
    (void)slot;
    (void)image_size_bytes;
    (void)out;
    return OTA_ERR_NOT_SUPPORTED;
}
ota_status_t ota_port_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                    ota_port_update_t **out) {
    (void)slot;
    (void)image_size_bytes;
    (void)offset_bytes;
    (void)out;
    return OTA_ERR_NOT_SUPPORTED;
}
ota_status_t ota_port_update_write(ota_port_update_t *update, const void *data, size_t len) {
    (void)update;
    (void)data;
    (void)len;
    return OTA_ERR_NOT_SUPPORTED;
}
ota_status_t ota_port_update_end(ota_port_update_t *update) {
    (void)update;
    return OTA_ERR_NOT_SUPPORTED;
}
void ota_port_update_abort(ota_port_update_t *update) {
    (void)update;
}
ota_status_t ota_port_set_boot_slot(int slot) {
    (void)slot;
    return OTA_ERR_NOT_SUPPORTED;
}
ota_status_t ota_port_mark_valid(void) {
    return OTA_OK;
}
ota_status_t ota_port_mark_invalid_and_reboot(void) {
    return OTA_ERR_NOT_SUPPORTED;
}
bool ota_port_rollback_possible(void) {
    return false;
}
int ota_port_last_invalid_slot(void) {
    return OTA_SLOT_NONE;
}
void ota_port_chip_info(uint16_t *chip_id, uint16_t *chip_rev_full) {
    *chip_id = 9;
    *chip_rev_full = 0;
}
ota_status_t ota_port_http_open(const ota_port_http_request_t *request, ota_port_http_t **out,
                                ota_port_http_response_t *response) {
    (void)request;
    (void)out;
    (void)response;
    return OTA_ERR_HTTP_CONNECT;
}
ota_status_t ota_port_http_read(ota_port_http_t *http, void *buf, size_t cap, size_t *n_read) {
    (void)http;
    (void)buf;
    (void)cap;
    *n_read = 0;
    return OTA_ERR_IO;
}
void ota_port_http_close(ota_port_http_t *http) {
    (void)http;
}

/* SHA-256 / ECDSA: the targets fuzz parsers; a digest of zeros and "bad signature" suffice. */
struct ota_port_sha256 {
    int unused;
};
static struct ota_port_sha256 fuzz_sha;
ota_status_t ota_port_sha256_begin(ota_port_sha256_t **out) {
    *out = &fuzz_sha;
    return OTA_OK;
}
ota_status_t ota_port_sha256_update(ota_port_sha256_t *ctx, const void *data, size_t len) {
    (void)ctx;
    (void)data;
    (void)len;
    return OTA_OK;
}
ota_status_t ota_port_sha256_finish(ota_port_sha256_t *ctx, uint8_t digest[32]) {
    (void)ctx;
    memset(digest, 0, 32);
    return OTA_OK;
}
void ota_port_sha256_discard(ota_port_sha256_t *ctx) {
    (void)ctx;
}
ota_status_t ota_port_ecdsa_p256_verify(const uint8_t public_key[65], const uint8_t digest[32],
                                        const uint8_t signature[64]) {
    (void)public_key;
    (void)digest;
    (void)signature;
    return OTA_ERR_MANIFEST_SIGNATURE;
}

ota_status_t ota_port_kv_get(const char *key, void *buf, size_t *len) {
    (void)key;
    if (fuzz_kv_data == NULL) {
        return OTA_ERR_NOT_FOUND;
    }
    if (fuzz_kv_len > *len) {
        return OTA_ERR_NO_MEM;
    }
    memcpy(buf, fuzz_kv_data, fuzz_kv_len);
    *len = fuzz_kv_len;
    return OTA_OK;
}
ota_status_t ota_port_kv_set(const char *key, const void *buf, size_t len) {
    (void)key;
    (void)buf;
    (void)len;
    return OTA_OK;
}
ota_status_t ota_port_kv_erase(const char *key) {
    (void)key;
    return OTA_OK;
}

uint64_t ota_port_monotonic_ms(void) {
    return 0;
}
void ota_port_sleep_ms(uint32_t ms) {
    (void)ms;
}
uint32_t ota_port_random_u32(void) {
    return 0;
}
void ota_port_reboot(void) {
    abort();
}
void ota_port_log(ota_log_level_t level, const char *tag, const char *fmt, va_list args) {
    (void)level;
    (void)tag;
    (void)fmt;
    (void)args;
}
