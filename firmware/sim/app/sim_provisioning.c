/* sim_provisioning.c — a boot's settings: the config file, then the NVS provisioning image. */
#include "sim_provisioning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sim_partition_table.h"

#define SIM_NVS_PAGE_BYTES 4096u
#define SIM_NVS_ENTRY_BYTES 32u
#define SIM_NVS_PAGE_HEAD_BYTES 64u /* page header and entry bitmap: never encrypted */

/* ESP-IDF nvs_sec_provider (HMAC scheme): XTS keys = HMAC-SHA256(key, EKEY_SEED x 8) ||
 * HMAC-SHA256(key, TKEY_SEED x 8), seeds as little-endian words. */
static bool sim_nvs_xts_keys(const uint8_t hmac_key[32], uint8_t xts[64]) {
    static const uint32_t seeds[2] = {0xAEBE5A5Au, 0xCEDEA5A5u};
    for (int k = 0; k < 2; k++) {
        uint8_t seed[32];
        for (int i = 0; i < 8; i++) {
            for (int b = 0; b < 4; b++) {
                seed[4 * i + b] = (uint8_t)(seeds[k] >> (8 * b));
            }
        }
        unsigned int len = 32;
        if (HMAC(EVP_sha256(), hmac_key, 32, seed, sizeof(seed), xts + 32 * k, &len) == NULL) {
            return false;
        }
    }
    return true;
}

/* In place, as nvs_flash reads an encrypted partition: every written 32-byte entry is
 * XTS-AES-256 with the tweak = its offset in the partition (little-endian, 16 bytes). */
static bool sim_nvs_decrypt(uint8_t *nvs, size_t len, const uint8_t hmac_key[32]) {
    uint8_t xts[64];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx != NULL && sim_nvs_xts_keys(hmac_key, xts);
    for (size_t page = 0; ok && page + SIM_NVS_PAGE_BYTES <= len; page += SIM_NVS_PAGE_BYTES) {
        for (size_t at = page + SIM_NVS_PAGE_HEAD_BYTES; ok && at < page + SIM_NVS_PAGE_BYTES;
             at += SIM_NVS_ENTRY_BYTES) {
            uint8_t *entry = nvs + at;
            bool erased = true;
            for (size_t i = 0; i < SIM_NVS_ENTRY_BYTES; i++) {
                erased = erased && entry[i] == 0xFF;
            }
            if (erased) {
                continue;
            }
            uint8_t tweak[16] = {0};
            for (size_t b = 0; b < sizeof(size_t) && b < sizeof(tweak); b++) {
                tweak[b] = (uint8_t)(at >> (8 * b));
            }
            uint8_t plain[SIM_NVS_ENTRY_BYTES];
            int n = 0;
            ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_xts(), NULL, xts, tweak) == 1 &&
                 EVP_DecryptUpdate(ctx, plain, &n, entry, (int)SIM_NVS_ENTRY_BYTES) == 1 &&
                 n == (int)SIM_NVS_ENTRY_BYTES;
            memcpy(entry, plain, sizeof(plain));
        }
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

bool sim_provisioning_load(const sim_config_t *file_config, const sim_flash_t *flash,
                           sim_config_t *out, sim_provisioning_info_t *info, char *why,
                           size_t why_len) {
    *out = *file_config;
    memset(info, 0, sizeof(*info));
    sim_partition_table_t table;
    char reason[160];
    if (sim_partition_table_load(flash, &table, reason, sizeof(reason)) == SIM_PT_OK) {
        const sim_partition_t *nvs =
            sim_partition_find(&table, SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_NVS);
        if (nvs != NULL) {
            info->nvs_offset_bytes = nvs->offset_bytes;
            info->has_nvs_partition = true;
            uint8_t *bytes = malloc(nvs->size_bytes);
            if (bytes == NULL) {
                snprintf(why, why_len, "out of memory reading the nvs partition");
                return false;
            }
            bool ok =
                sim_flash_read(flash, nvs->offset_bytes, bytes, nvs->size_bytes) == SIM_FLASH_OK &&
                (!file_config->nvs_encryption ||
                 sim_nvs_decrypt(bytes, nvs->size_bytes, file_config->nvs_hmac_key)) &&
                sim_config_apply_nvs(out, bytes, nvs->size_bytes, &info->nvs_settings, reason,
                                     sizeof(reason));
            free(bytes);
            if (!ok) {
                snprintf(why, why_len, "provisioning image at 0x%lx: %s",
                         (unsigned long)nvs->offset_bytes, reason);
                return false;
            }
        }
    }
    return sim_config_check(out, why, why_len);
}
