/*
 * trusted_keys.h — parses CONFIG_CSI_OTA_TRUSTED_KEYS
 * ("<16 hex key id>:<130 hex 04||X||Y>[,…]", from `csi-ota keys show-public --format kconfig`).
 */
#pragma once

#include <stddef.h>

#include "ota_agent.h"

/* Fills keys[0..cap) and returns how many were parsed (ota_trusted_keys_parse_list()).
 * Entries that are malformed, not an uncompressed point, or whose id is not
 * SHA-256(key)[0:8] are logged (with their 0-based position in the list) and skipped;
 * empty entries are skipped silently, entries after the cap-th key are ignored. */
size_t trusted_keys_parse(const char *text, ota_trusted_key_t *keys, size_t cap);
