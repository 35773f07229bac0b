/* ota_trusted_keys.c — parses the "<key id>:<public key>,…" trusted-key list. */
#include "ota_trusted_keys.h"

#include <string.h>

#include "ota_manifest.h"
#include "ota_port.h"

#define OTA_TRUSTED_KEYS_DIGEST_BYTES 32

/* SHA-256(raw)[0:8] == key_id: OTA_OK, OTA_ERR_MANIFEST_KEY, or the port's failure. */
static ota_status_t ota_trusted_keys_check_id(const ota_trusted_key_t *key) {
    ota_port_sha256_t *sha = NULL;
    uint8_t digest[OTA_TRUSTED_KEYS_DIGEST_BYTES];
    ota_status_t status = ota_port_sha256_begin(&sha);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_sha256_update(sha, key->raw, sizeof(key->raw));
    if (status != OTA_OK) {
        ota_port_sha256_discard(sha);
        return status;
    }
    status = ota_port_sha256_finish(sha, digest);
    if (status != OTA_OK) {
        return status;
    }
    return memcmp(digest, key->key_id, sizeof(key->key_id)) == 0 ? OTA_OK : OTA_ERR_MANIFEST_KEY;
}

ota_status_t ota_trusted_keys_parse_entry(const char *entry, size_t len, ota_trusted_key_t *out) {
    if (entry == NULL || out == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    ota_trusted_key_t key;
    if (len != OTA_TRUSTED_KEYS_ENTRY_CHARS || entry[OTA_TRUSTED_KEYS_ID_HEX_CHARS] != ':' ||
        !ota_manifest_hex_decode(entry, OTA_TRUSTED_KEYS_ID_HEX_CHARS, key.key_id,
                                 sizeof(key.key_id)) ||
        !ota_manifest_hex_decode(entry + OTA_TRUSTED_KEYS_ID_HEX_CHARS + 1,
                                 OTA_TRUSTED_KEYS_RAW_HEX_CHARS, key.raw, sizeof(key.raw)) ||
        key.raw[0] != 0x04) {
        return OTA_ERR_CONFIG;
    }
    ota_status_t status = ota_trusted_keys_check_id(&key);
    if (status == OTA_OK) {
        *out = key;
    }
    return status;
}

ota_status_t ota_trusted_keys_parse_list(const char *text, ota_trusted_key_t *keys, size_t cap,
                                         ota_trusted_keys_entry_cb_t on_entry, void *ctx,
                                         ota_trusted_keys_result_t *result) {
    ota_trusted_keys_result_t local;
    ota_trusted_keys_result_t *r = result != NULL ? result : &local;
    memset(r, 0, sizeof(*r));
    r->bad_status = OTA_OK;
    if (keys == NULL && cap > 0) {
        return OTA_ERR_INVALID_ARG;
    }
    const char *p = text != NULL ? text : "";
    for (size_t index = 0; *p != '\0'; index++) {
        const char *entry = p;
        const size_t len = strcspn(entry, ",");
        p = entry[len] == ',' ? entry + len + 1 : entry + len;
        if (len == 0) {
            continue;
        }
        if (r->count == cap) {
            r->truncated = true;
            break;
        }
        ota_status_t status = ota_trusted_keys_parse_entry(entry, len, &keys[r->count]);
        if (status == OTA_OK) {
            r->count++;
        } else {
            if (r->rejected == 0) {
                r->bad_status = status;
                r->bad_index = index;
                r->bad_entry = entry;
                r->bad_len = len;
            }
            r->rejected++;
        }
        if (on_entry != NULL) {
            on_entry(ctx, index, entry, len, status);
        }
    }
    if (r->rejected > 0) {
        return r->bad_status;
    }
    return r->truncated ? OTA_ERR_CONFIG : OTA_OK;
}
