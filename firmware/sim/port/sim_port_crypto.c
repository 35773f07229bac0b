/* sim_port_crypto.c — ota_port.h crypto on OpenSSL 3: SHA-256 (EVP) and ECDSA P-256 verify. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdlib.h>

#include "ota_port.h"
#include "sim_port_internal.h"

struct ota_port_sha256 {
    EVP_MD_CTX *md;
    struct ota_port_sha256 *next; /* live contexts, freed by sim_port_reset() */
};

static struct ota_port_sha256 *sim_crypto_live;

static void sim_crypto_unlink(struct ota_port_sha256 *ctx) {
    for (struct ota_port_sha256 **p = &sim_crypto_live; *p != NULL; p = &(*p)->next) {
        if (*p == ctx) {
            *p = ctx->next;
            return;
        }
    }
}

static void sim_crypto_free(struct ota_port_sha256 *ctx) {
    sim_crypto_unlink(ctx);
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

void sim_crypto_reset(void) {
    while (sim_crypto_live != NULL) {
        sim_crypto_free(sim_crypto_live);
    }
}

ota_status_t ota_port_sha256_begin(ota_port_sha256_t **out) {
    struct ota_port_sha256 *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return OTA_ERR_NO_MEM;
    }
    ctx->md = EVP_MD_CTX_new();
    if (ctx->md == NULL || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx->md);
        free(ctx);
        return OTA_ERR_CRYPTO;
    }
    ctx->next = sim_crypto_live;
    sim_crypto_live = ctx;
    *out = ctx;
    return OTA_OK;
}

ota_status_t ota_port_sha256_update(ota_port_sha256_t *ctx, const void *data, size_t len) {
    return EVP_DigestUpdate(ctx->md, data, len) == 1 ? OTA_OK : OTA_ERR_CRYPTO;
}

ota_status_t ota_port_sha256_finish(ota_port_sha256_t *ctx, uint8_t digest[32]) {
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(ctx->md, digest, &len);
    sim_crypto_free(ctx);
    return ok == 1 && len == 32 ? OTA_OK : OTA_ERR_CRYPTO;
}

void ota_port_sha256_discard(ota_port_sha256_t *ctx) {
    if (ctx != NULL) {
        sim_crypto_free(ctx);
    }
}

/* EVP_PKEY for an uncompressed P-256 point (04||X||Y); NULL when not a valid point. */
static EVP_PKEY *sim_crypto_public_key(const uint8_t raw[65]) {
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, raw, 65) != 1) {
        goto done;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* DER ECDSA-Sig-Value from raw r||s; length or 0. */
static int sim_crypto_der_signature(const uint8_t signature[64], unsigned char **der) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(signature, 32, NULL);
    BIGNUM *s = BN_bin2bn(signature + 32, 32, NULL);
    int len = 0;
    if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = NULL; /* owned by sig now */
        s = NULL;
        len = i2d_ECDSA_SIG(sig, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return len > 0 ? len : 0;
}

ota_status_t ota_port_ecdsa_p256_verify(const uint8_t public_key[65], const uint8_t digest[32],
                                        const uint8_t signature[64]) {
    if (public_key[0] != 0x04) {
        return OTA_ERR_MANIFEST_SIGNATURE;
    }
    EVP_PKEY *pkey = sim_crypto_public_key(public_key);
    if (pkey == NULL) {
        return OTA_ERR_MANIFEST_SIGNATURE; /* not a point on P-256 */
    }
    unsigned char *der = NULL;
    int der_len = sim_crypto_der_signature(signature, &der);
    ota_status_t status = OTA_ERR_CRYPTO;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (der_len > 0 && ctx != NULL && EVP_PKEY_verify_init(ctx) == 1) {
        int ok = EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, 32);
        status = ok == 1 ? OTA_OK : OTA_ERR_MANIFEST_SIGNATURE;
    }
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    return status;
}
