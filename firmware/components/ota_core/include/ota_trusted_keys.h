/*
 * ota_trusted_keys.h — the trusted release-key list, one parser for every
 * platform: CONFIG_CSI_OTA_TRUSTED_KEYS in the firmware (firmware/main); the virtual
 * board sets that value from `trusted_keys=` in its config file (firmware/sim/idf).
 *
 * Format (what `csi-ota keys show-public --format kconfig` prints):
 *
 *     <16 hex key id>:<130 hex public key 04||X||Y>[,<entry>…]
 *
 * Hex digits in either case. Every key id must be SHA-256(public key)[0:8].
 * The parser only reports what is wrong; the caller keeps its policy (the
 * device logs and skips bad entries, the simulator refuses the config).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "ota_agent.h"
#include "ota_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_TRUSTED_KEYS_ID_HEX_CHARS (2 * OTA_AGENT_KEY_ID_BYTES)      /* 16 */
#define OTA_TRUSTED_KEYS_RAW_HEX_CHARS (2 * OTA_AGENT_PUBLIC_KEY_BYTES) /* 130 */
#define OTA_TRUSTED_KEYS_ENTRY_CHARS                                                               \
    (OTA_TRUSTED_KEYS_ID_HEX_CHARS + 1 + OTA_TRUSTED_KEYS_RAW_HEX_CHARS) /* 147 */

/* Parses one entry, exactly len characters of entry (no terminator needed).
 * OTA_OK: *out holds the key.
 * OTA_ERR_CONFIG: malformed — wrong length, no ':' after the id, a non-hex
 *   digit, or a public key that is not an uncompressed point (04||X||Y).
 * OTA_ERR_MANIFEST_KEY: well formed, but the id is not SHA-256(key)[0:8].
 * Any other status: the port's SHA-256 failed (OTA_ERR_CRYPTO, OTA_ERR_NO_MEM).
 * *out is written only on OTA_OK. */
ota_status_t ota_trusted_keys_parse_entry(const char *entry, size_t len, ota_trusted_key_t *out);

/* Called by ota_trusted_keys_parse_list() for every non-empty entry it parses,
 * in list order, with the entry's status (OTA_OK when the key was stored).
 * index: the entry's 0-based position in the comma list (empty entries count). */
typedef void (*ota_trusted_keys_entry_cb_t)(void *ctx, size_t index, const char *entry, size_t len,
                                            ota_status_t status);

typedef struct {
    size_t count;            /* keys stored in keys[0..count) */
    size_t rejected;         /* non-empty entries skipped because they were bad */
    ota_status_t bad_status; /* status of the first bad entry; OTA_OK when none */
    size_t bad_index;        /* its 0-based position in the comma list */
    const char *bad_entry;   /* its text (bad_len characters, not terminated); NULL when none */
    size_t bad_len;
    bool truncated; /* a non-empty entry followed the cap-th key: it and the rest were ignored */
} ota_trusted_keys_result_t;

/* Parses a NUL-terminated comma list (NULL is the empty list) into keys[0..cap).
 * Empty entries (",,", a trailing ',') are skipped silently. A bad entry is
 * skipped and parsing goes on; the first one is described in *result. Parsing
 * stops at the first non-empty entry after cap keys were stored (truncated).
 * on_entry may be NULL. Returns OTA_OK when every non-empty entry was stored,
 * else the first bad entry's status, else (only truncated) OTA_ERR_CONFIG. */
ota_status_t ota_trusted_keys_parse_list(const char *text, ota_trusted_key_t *keys, size_t cap,
                                         ota_trusted_keys_entry_cb_t on_entry, void *ctx,
                                         ota_trusted_keys_result_t *result);

#ifdef __cplusplus
}
#endif
