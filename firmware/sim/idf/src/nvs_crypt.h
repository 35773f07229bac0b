/*
 * nvs_crypt.h — NVS encryption (CONFIG_NVS_ENCRYPTION, nvs_sec_provider's HMAC scheme) of the
 * engine: the XTS-AES-256 keys are derived from the eFuse HMAC key, and every 32-byte entry
 * the engine writes is encrypted and every entry it reads decrypted (NVSEncryptedPartition),
 * with the tweak = the entry's byte offset in the partition (16 bytes, little-endian). Page
 * headers and entry-state bitmaps (the first 64 bytes of a page) stay in clear.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NVS_CRYPT_HMAC_KEY_BYTES 32u
#define NVS_CRYPT_XTS_KEY_BYTES 64u

typedef struct nvs_crypt {
    uint8_t xts_key[NVS_CRYPT_XTS_KEY_BYTES]; /* encryption key || tweak key */
} nvs_crypt_t;

/* nvs_sec_provider (HMAC scheme): HMAC-SHA256(key, EKEY_SEED x 8) || HMAC-SHA256(key,
 * TKEY_SEED x 8), the seeds as little-endian words. false if the derivation fails. */
bool nvs_crypt_derive_keys(const uint8_t hmac_key[NVS_CRYPT_HMAC_KEY_BYTES],
                           uint8_t xts_key[NVS_CRYPT_XTS_KEY_BYTES]);
bool nvs_crypt_init(nvs_crypt_t *crypt, const uint8_t hmac_key[NVS_CRYPT_HMAC_KEY_BYTES]);

/* Encrypts len bytes (whole entries) of buf in place, written at partition offset `offset`. */
esp_err_t nvs_crypt_encrypt(const nvs_crypt_t *crypt, uint32_t offset, uint8_t *buf, size_t len);
/* Decrypts len bytes (whole entries) read at `offset` in place; an all-0xFF entry is erased
 * flash and stays as it is. */
esp_err_t nvs_crypt_decrypt(const nvs_crypt_t *crypt, uint32_t offset, uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif
