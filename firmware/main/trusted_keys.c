/*
 * trusted_keys.c — the release keys built into the firmware.
 */
#include "trusted_keys.h"

#include <string.h>

#include "esp_log.h"
#include "ota_port.h"

static const char *TAG = "trusted_keys";

#define TRUSTED_KEYS_ID_HEX 16
#define TRUSTED_KEYS_RAW_HEX 130

static int trusted_keys_nibble(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool trusted_keys_hex(const char *hex, size_t hex_len, uint8_t *out) {
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = trusted_keys_nibble(hex[2 * i]);
        int lo = trusted_keys_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return true;
}

static bool trusted_keys_id_matches(const ota_trusted_key_t *key) {
    ota_port_sha256_t *sha = NULL;
    uint8_t digest[32];
    if (ota_port_sha256_begin(&sha) != OTA_OK) {
        return false;
    }
    if (ota_port_sha256_update(sha, key->raw, sizeof(key->raw)) != OTA_OK) {
        ota_port_sha256_discard(sha);
        return false;
    }
    if (ota_port_sha256_finish(sha, digest) != OTA_OK) {
        return false;
    }
    return memcmp(digest, key->key_id, sizeof(key->key_id)) == 0;
}

size_t trusted_keys_parse(const char *text, ota_trusted_key_t *keys, size_t cap) {
    size_t count = 0;
    const char *p = text;
    while (p != NULL && *p != '\0') {
        const size_t entry_len = strcspn(p, ",");
        const char *next = p[entry_len] == ',' ? p + entry_len + 1 : NULL;
        const char *entry = p;
        p = next;
        if (entry_len == 0) {
            continue;
        }
        if (count == cap) {
            ESP_LOGE(TAG, "more than %u trusted keys, extra ignored", (unsigned)cap);
            break;
        }
        ota_trusted_key_t *key = &keys[count];
        if (entry_len != TRUSTED_KEYS_ID_HEX + 1 + TRUSTED_KEYS_RAW_HEX ||
            entry[TRUSTED_KEYS_ID_HEX] != ':' ||
            !trusted_keys_hex(entry, TRUSTED_KEYS_ID_HEX, key->key_id) ||
            !trusted_keys_hex(entry + TRUSTED_KEYS_ID_HEX + 1, TRUSTED_KEYS_RAW_HEX, key->raw) ||
            key->raw[0] != 0x04) {
            ESP_LOGE(TAG, "malformed trusted key entry %u, ignored", (unsigned)count);
            continue;
        }
        if (!trusted_keys_id_matches(key)) {
            ESP_LOGE(TAG, "trusted key %.16s: id is not SHA-256(key)[0:8], ignored", entry);
            continue;
        }
        ESP_LOGI(TAG, "trusted release key %.16s", entry);
        count++;
    }
    if (count == 0) {
        ESP_LOGW(TAG, "no trusted release key: every manifest will be refused");
    }
    return count;
}
