/* ota_fake_port.c — see ota_fake_port.h. */
#include "ota_fake_port.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ota_fake_device_t ota_fake;
jmp_buf ota_fake_reboot_jump;

#define OTA_FAKE_KV_KEYS 16
#define OTA_FAKE_KV_VALUE_BYTES 1024

typedef struct {
    char key[16];
    uint8_t value[OTA_FAKE_KV_VALUE_BYTES];
    size_t len;
    bool used;
} ota_fake_kv_t;

static ota_fake_kv_t ota_fake_kv[OTA_FAKE_KV_KEYS];

void ota_fake_reset(void) {
    memset(&ota_fake, 0, sizeof(ota_fake));
    memset(ota_fake_kv, 0, sizeof(ota_fake_kv));
    ota_fake.running_slot = 0;
    ota_fake.boot_slot = 0;
}

static ota_fake_kv_t *ota_fake_kv_find(const char *key) {
    for (size_t i = 0; i < OTA_FAKE_KV_KEYS; i++) {
        if (ota_fake_kv[i].used && strcmp(ota_fake_kv[i].key, key) == 0) {
            return &ota_fake_kv[i];
        }
    }
    return NULL;
}

ota_status_t ota_port_kv_get(const char *key, void *buf, size_t *len) {
    ota_fake_kv_t *entry = ota_fake_kv_find(key);
    if (entry == NULL) {
        return OTA_ERR_NOT_FOUND;
    }
    if (entry->len > *len) {
        return OTA_ERR_NO_MEM;
    }
    memcpy(buf, entry->value, entry->len);
    *len = entry->len;
    return OTA_OK;
}

/* A power cut before the KV write numbered kv_cut_at: it never happens. */
static void ota_fake_kv_write_op(void) {
    ota_fake.kv_writes++;
    if (ota_fake.kv_cut_at != 0 && ota_fake.kv_writes == ota_fake.kv_cut_at) {
        longjmp(ota_fake_reboot_jump, 2);
    }
}

ota_status_t ota_port_kv_set(const char *key, const void *buf, size_t len) {
    ota_fake_kv_write_op();
    if (strlen(key) > 15 || len > OTA_FAKE_KV_VALUE_BYTES) {
        return OTA_ERR_INVALID_ARG;
    }
    ota_fake_kv_t *entry = ota_fake_kv_find(key);
    for (size_t i = 0; entry == NULL && i < OTA_FAKE_KV_KEYS; i++) {
        if (!ota_fake_kv[i].used) {
            entry = &ota_fake_kv[i];
            entry->used = true;
            strcpy(entry->key, key);
        }
    }
    if (entry == NULL) {
        return OTA_ERR_NO_MEM;
    }
    memcpy(entry->value, buf, len);
    entry->len = len;
    return OTA_OK;
}

ota_status_t ota_port_kv_erase(const char *key) {
    ota_fake_kv_write_op();
    ota_fake_kv_t *entry = ota_fake_kv_find(key);
    if (entry != NULL) {
        memset(entry, 0, sizeof(*entry));
    }
    return OTA_OK;
}

int ota_port_running_slot(void) {
    return ota_fake.running_slot;
}
int ota_port_boot_slot(void) {
    return ota_fake.boot_slot;
}
int ota_port_next_update_slot(void) {
    return ota_fake.running_slot == 0 ? 1 : 0;
}

ota_status_t ota_port_slot_size(int slot, uint32_t *size_bytes) {
    (void)slot;
    *size_bytes = 0x140000u;
    return OTA_OK;
}

ota_status_t ota_port_slot_state(int slot, ota_img_state_t *state) {
    if (slot < 0 || slot >= OTA_FAKE_SLOTS || !ota_fake.has_state[slot]) {
        return OTA_ERR_NOT_FOUND;
    }
    *state = ota_fake.states[slot];
    return OTA_OK;
}

ota_status_t ota_port_slot_app_desc(int slot, ota_app_desc_t *desc) {
    if (slot < 0 || slot >= OTA_FAKE_SLOTS) {
        return OTA_ERR_NOT_FOUND;
    }
    memset(desc, 0, sizeof(*desc));
    snprintf(desc->version, sizeof(desc->version), "%s", ota_fake.versions[slot]);
    snprintf(desc->project_name, sizeof(desc->project_name), "csi_sensor");
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
    *out = NULL;
    return OTA_ERR_FLASH_WRITE;
}

ota_status_t ota_port_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                    ota_port_update_t **out) {
    (void)offset_bytes;
    return ota_port_update_begin(slot, image_size_bytes, out);
}

ota_status_t ota_port_update_write(ota_port_update_t *update, const void *data, size_t len) {
    (void)update;
    (void)data;
    (void)len;
    return OTA_ERR_FLASH_WRITE;
}

ota_status_t ota_port_update_end(ota_port_update_t *update) {
    (void)update;
    return OTA_ERR_FLASH_WRITE;
}

void ota_port_update_abort(ota_port_update_t *update) {
    (void)update;
}

ota_status_t ota_port_set_boot_slot(int slot) {
    ota_fake.boot_slot = slot;
    return OTA_OK;
}

ota_status_t ota_port_mark_valid(void) {
    if (ota_fake.boot_slot >= 0 && ota_fake.boot_slot < OTA_FAKE_SLOTS) {
        ota_fake.states[ota_fake.boot_slot] = OTA_IMG_VALID;
    }
    return OTA_OK;
}

ota_status_t ota_port_mark_invalid_and_reboot(void) {
    ota_port_reboot();
    return OTA_ERR_ROLLBACK_FAILED;
}

bool ota_port_rollback_possible(void) {
    return true;
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
    (void)response;
    *out = NULL;
    ota_fake.http_requests++;
    return OTA_ERR_HTTP_CONNECT;
}

ota_status_t ota_port_http_read(ota_port_http_t *http, void *buf, size_t cap, size_t *n_read) {
    (void)http;
    (void)buf;
    (void)cap;
    *n_read = 0;
    return OTA_ERR_HTTP_CONNECT;
}

void ota_port_http_close(ota_port_http_t *http) {
    (void)http;
}

ota_status_t ota_port_sha256_begin(ota_port_sha256_t **out) {
    *out = NULL;
    return OTA_ERR_NO_MEM;
}

ota_status_t ota_port_sha256_update(ota_port_sha256_t *ctx, const void *data, size_t len) {
    (void)ctx;
    (void)data;
    (void)len;
    return OTA_ERR_NO_MEM;
}

ota_status_t ota_port_sha256_finish(ota_port_sha256_t *ctx, uint8_t digest[32]) {
    (void)ctx;
    memset(digest, 0, 32);
    return OTA_ERR_NO_MEM;
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

static uint64_t ota_fake_now_ms;

uint64_t ota_port_monotonic_ms(void) {
    return ota_fake_now_ms;
}
void ota_port_sleep_ms(uint32_t ms) {
    ota_fake_now_ms += ms;
}
uint32_t ota_port_random_u32(void) {
    return 0x12345678u;
}

void ota_port_reboot(void) {
    longjmp(ota_fake_reboot_jump, 1);
}

void ota_port_log(ota_log_level_t level, const char *tag, const char *fmt, va_list args) {
    static const char letters[] = "?EWID";
    printf("%c %s: ", letters[level <= OTA_LOG_DEBUG ? level : 0], tag);
    vprintf(fmt, args);
    printf("\n");
}
