/*
 * ota_port_espidf_crypto.c — SHA-256 and ECDSA-P256 verify of ota_port.h on PSA Crypto
 * (ESP-IDF v6's mbedtls component; the SHA driver uses the hardware accelerator).
 */
#include <inttypes.h>
#include <stdlib.h>

#include "esp_log.h"
#include "psa/crypto.h"

#include "ota_port.h"
#include "ota_port_espidf_priv.h"

static const char *TAG = OTA_PORT_ESPIDF_TAG;

#define CRYPTO_SHA256_BYTES 32u
#define CRYPTO_P256_PUBLIC_KEY_BYTES 65u /* 04 || X || Y */
#define CRYPTO_P256_SIGNATURE_BYTES 64u  /* r || s */
#define CRYPTO_P256_BITS 256u

struct ota_port_sha256 {
    psa_hash_operation_t operation;
};

static ota_status_t crypto_ready(void) {
    /* psa_crypto_init may be called any number of times. */
    psa_status_t status = psa_crypto_init();
    if (status != PSA_SUCCESS) {
        ESP_LOGE(TAG, "psa_crypto_init failed: %" PRId32, (int32_t)status);
        return OTA_ERR_CRYPTO;
    }
    return OTA_OK;
}

ota_status_t ota_port_sha256_begin(ota_port_sha256_t **out) {
    if (out == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    ota_status_t ready = crypto_ready();
    if (ready != OTA_OK) {
        return ready;
    }
    ota_port_sha256_t *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return OTA_ERR_NO_MEM;
    }
    ctx->operation = (psa_hash_operation_t)PSA_HASH_OPERATION_INIT;
    psa_status_t status = psa_hash_setup(&ctx->operation, PSA_ALG_SHA_256);
    if (status != PSA_SUCCESS) {
        ESP_LOGE(TAG, "psa_hash_setup failed: %" PRId32, (int32_t)status);
        free(ctx);
        return OTA_ERR_CRYPTO;
    }
    *out = ctx;
    return OTA_OK;
}

ota_status_t ota_port_sha256_update(ota_port_sha256_t *ctx, const void *data, size_t len) {
    if (ctx == NULL || (data == NULL && len > 0)) {
        return OTA_ERR_INVALID_ARG;
    }
    psa_status_t status = psa_hash_update(&ctx->operation, data, len);
    if (status != PSA_SUCCESS) {
        ESP_LOGE(TAG, "psa_hash_update failed: %" PRId32, (int32_t)status);
        return OTA_ERR_CRYPTO;
    }
    return OTA_OK;
}

ota_status_t ota_port_sha256_finish(ota_port_sha256_t *ctx, uint8_t digest[32]) {
    if (ctx == NULL || digest == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    size_t digest_len = 0;
    psa_status_t status =
        psa_hash_finish(&ctx->operation, digest, CRYPTO_SHA256_BYTES, &digest_len);
    if (status != PSA_SUCCESS) {
        psa_hash_abort(&ctx->operation);
    }
    free(ctx);
    if (status != PSA_SUCCESS || digest_len != CRYPTO_SHA256_BYTES) {
        ESP_LOGE(TAG, "psa_hash_finish failed: %" PRId32, (int32_t)status);
        return OTA_ERR_CRYPTO;
    }
    return OTA_OK;
}

void ota_port_sha256_discard(ota_port_sha256_t *ctx) {
    if (ctx == NULL) {
        return;
    }
    psa_hash_abort(&ctx->operation);
    free(ctx);
}

ota_status_t ota_port_ecdsa_p256_verify(const uint8_t public_key[65], const uint8_t digest[32],
                                        const uint8_t signature[64]) {
    if (public_key == NULL || digest == NULL || signature == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    ota_status_t ready = crypto_ready();
    if (ready != OTA_OK) {
        return ready;
    }
    const psa_algorithm_t alg = PSA_ALG_ECDSA(PSA_ALG_SHA_256);
    psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_VERIFY_HASH);
    psa_set_key_algorithm(&attributes, alg);
    psa_set_key_type(&attributes, PSA_KEY_TYPE_ECC_PUBLIC_KEY(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&attributes, CRYPTO_P256_BITS);

    psa_key_id_t key = 0;
    psa_status_t status =
        psa_import_key(&attributes, public_key, CRYPTO_P256_PUBLIC_KEY_BYTES, &key);
    psa_reset_key_attributes(&attributes);
    if (status != PSA_SUCCESS) {
        /* A trusted key that is not a P-256 point is a build configuration error. */
        ESP_LOGE(TAG, "psa_import_key (trusted release key) failed: %" PRId32, (int32_t)status);
        return OTA_ERR_CONFIG;
    }
    status = psa_verify_hash(key, alg, digest, CRYPTO_SHA256_BYTES, signature,
                             CRYPTO_P256_SIGNATURE_BYTES);
    psa_destroy_key(key);
    if (status == PSA_ERROR_INVALID_SIGNATURE) {
        return OTA_ERR_MANIFEST_SIGNATURE;
    }
    if (status != PSA_SUCCESS) {
        ESP_LOGE(TAG, "psa_verify_hash failed: %" PRId32, (int32_t)status);
        return OTA_ERR_CRYPTO;
    }
    return OTA_OK;
}
