/* nvs_crypt.c — XTS-AES-256 of NVS entries with keys from the eFuse HMAC key (OpenSSL). */
#include "nvs_crypt.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nvs.h"
#include "nvs_item.h"

bool nvs_crypt_derive_keys(const uint8_t hmac_key[NVS_CRYPT_HMAC_KEY_BYTES],
                           uint8_t xts_key[NVS_CRYPT_XTS_KEY_BYTES]) {
    static const uint32_t seeds[2] = {0xAEBE5A5Au, 0xCEDEA5A5u}; /* EKEY_SEED, TKEY_SEED */
    for (int k = 0; k < 2; k++) {
        uint8_t seed[32];
        for (int i = 0; i < 8; i++) {
            for (int b = 0; b < 4; b++) {
                seed[4 * i + b] = (uint8_t)(seeds[k] >> (8 * b));
            }
        }
        unsigned int len = 32;
        if (HMAC(EVP_sha256(), hmac_key, NVS_CRYPT_HMAC_KEY_BYTES, seed, sizeof(seed),
                 xts_key + 32 * k, &len) == NULL ||
            len != 32) {
            return false;
        }
    }
    return true;
}

bool nvs_crypt_init(nvs_crypt_t *crypt, const uint8_t hmac_key[NVS_CRYPT_HMAC_KEY_BYTES]) {
    return nvs_crypt_derive_keys(hmac_key, crypt->xts_key);
}

static esp_err_t nvs_crypt_run(const nvs_crypt_t *crypt, uint32_t offset, uint8_t *buf, size_t len,
                               bool encrypt) {
    if (len % NVS_ENTRY_BYTES != 0) {
        return ESP_ERR_INVALID_SIZE;
    }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return ESP_ERR_NO_MEM;
    }
    esp_err_t err = ESP_OK;
    for (size_t at = 0; at < len && err == ESP_OK; at += NVS_ENTRY_BYTES) {
        uint8_t *entry = buf + at;
        if (!encrypt) {
            bool erased = true;
            for (size_t i = 0; i < NVS_ENTRY_BYTES && erased; i++) {
                erased = entry[i] == 0xFF;
            }
            if (erased) {
                continue;
            }
        }
        uint32_t address = offset + (uint32_t)at;
        uint8_t tweak[16] = {0};
        for (int b = 0; b < 4; b++) {
            tweak[b] = (uint8_t)(address >> (8 * b));
        }
        uint8_t out[NVS_ENTRY_BYTES];
        int n = 0;
        int ok = EVP_CipherInit_ex(ctx, EVP_aes_256_xts(), NULL, crypt->xts_key, tweak,
                                   encrypt ? 1 : 0) == 1 &&
                 EVP_CipherUpdate(ctx, out, &n, entry, (int)NVS_ENTRY_BYTES) == 1 &&
                 n == (int)NVS_ENTRY_BYTES;
        if (ok) {
            memcpy(entry, out, sizeof(out));
        } else {
            err = encrypt ? ESP_ERR_NVS_XTS_ENCR_FAILED : ESP_ERR_NVS_XTS_DECR_FAILED;
        }
    }
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

esp_err_t nvs_crypt_encrypt(const nvs_crypt_t *crypt, uint32_t offset, uint8_t *buf, size_t len) {
    return nvs_crypt_run(crypt, offset, buf, len, true);
}

esp_err_t nvs_crypt_decrypt(const nvs_crypt_t *crypt, uint32_t offset, uint8_t *buf, size_t len) {
    return nvs_crypt_run(crypt, offset, buf, len, false);
}
