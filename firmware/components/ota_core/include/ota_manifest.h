/*
 * ota_manifest.h — the signed release manifest (docs/manifest.md): strict
 * parsing of the key=value text and ECDSA P-256 verification against the
 * trusted keys built into the firmware. The policy checks (project, replay,
 * downgrade, chip, size) live in ota_agent.c, which knows the device state.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_agent.h"
#include "ota_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_MANIFEST_MAX_BYTES 1024
#define OTA_MANIFEST_FORMAT_VERSION 1
#define OTA_MANIFEST_NOTES_MAX_BYTES 200

typedef struct {
    uint32_t format;
    char project[32];
    char version[32];
    uint32_t sequence;
    uint16_t chip_id;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    uint32_t secure_version;
    uint32_t size_bytes;
    uint8_t sha256[32];
    char sha256_hex[65];
    bool rollback;
    char created[21];
    uint8_t key_id[OTA_AGENT_KEY_ID_BYTES];
    char notes[OTA_MANIFEST_NOTES_MAX_BYTES + 1];
    uint8_t signature[64];
    size_t signed_len_bytes; /* bytes covered by the signature (up to and incl. notes' \n) */
} ota_manifest_t;

/* Strict parse of the text; OTA_ERR_MANIFEST_FORMAT on any deviation. */
ota_status_t ota_manifest_parse(const char *data, size_t len, ota_manifest_t *out);

/* Parse, find the trusted key named by key_id (OTA_ERR_MANIFEST_KEY) and verify
 * the signature over SHA-256 of the signed bytes (OTA_ERR_MANIFEST_SIGNATURE). */
ota_status_t ota_manifest_verify(const char *data, size_t len, const ota_trusted_key_t *keys,
                                 size_t key_count, ota_manifest_t *out);

/* The core's one hex codec (either case in, lower case out), shared with the
 * client's KV records, the trusted-key list (ota_trusted_keys.c) and URL
 * percent-decoding (ota_url.c). */
int ota_manifest_hex_nibble(char c); /* 0..15, or -1 if c is not a hex digit */
bool ota_manifest_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_len);
void ota_manifest_hex_encode(const uint8_t *data, size_t len, char *out /* 2·len+1 */);

#ifdef __cplusplus
}
#endif
