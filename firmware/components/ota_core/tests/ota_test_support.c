/* ota_test_support.c — OpenSSL key generation and manifest signing for the unit tests. */
#include "ota_test_support.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_manifest.h"

static void ota_test_die(const char *what) {
    fprintf(stderr, "test support: %s failed\n", what);
    abort();
}

void ota_test_key_generate(ota_test_key_t *key) {
    memset(key, 0, sizeof(*key));
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) {
        ota_test_die("EVP_PKEY_Q_keygen");
    }
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, key->trusted.raw,
                                        sizeof(key->trusted.raw), &len) != 1 ||
        len != 65 || key->trusted.raw[0] != 0x04) {
        ota_test_die("public key export");
    }
    uint8_t digest[32];
    unsigned int dlen = 0;
    if (EVP_Digest(key->trusted.raw, 65, digest, &dlen, EVP_sha256(), NULL) != 1) {
        ota_test_die("EVP_Digest");
    }
    memcpy(key->trusted.key_id, digest, sizeof(key->trusted.key_id));
    key->pkey = pkey;
}

void ota_test_key_free(ota_test_key_t *key) {
    EVP_PKEY_free(key->pkey);
    key->pkey = NULL;
}

size_t ota_test_sign(const ota_test_key_t *key, char *buf, size_t len, size_t cap) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t der_len = sizeof(der);
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) != 1 ||
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)buf, len) != 1) {
        ota_test_die("EVP_DigestSign");
    }
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL) {
        ota_test_die("d2i_ECDSA_SIG");
    }
    uint8_t raw[64];
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32) {
        ota_test_die("BN_bn2binpad");
    }
    ECDSA_SIG_free(sig);
    char hex[129];
    ota_manifest_hex_encode(raw, sizeof(raw), hex);
    int n = snprintf(buf + len, cap - len, "signature=%s\n", hex);
    if (n < 0 || (size_t)n >= cap - len) {
        ota_test_die("signature does not fit");
    }
    return len + (size_t)n;
}

size_t ota_test_manifest_body(char *buf, size_t cap, const char *version, uint32_t sequence,
                              const ota_test_key_t *key) {
    char key_id[17];
    ota_manifest_hex_encode(key->trusted.key_id, sizeof(key->trusted.key_id), key_id);
    int n = snprintf(buf, cap,
                     "format=1\n"
                     "project=csi_sensor\n"
                     "version=%s\n"
                     "sequence=%lu\n"
                     "chip_id=9\n"
                     "min_chip_rev_full=0\n"
                     "max_chip_rev_full=99\n"
                     "secure_version=0\n"
                     "size=812345\n"
                     "sha256=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
                     "rollback=0\n"
                     "created=2026-11-28T16:50:00Z\n"
                     "key_id=%s\n"
                     "notes=fix CSI timestamps\n",
                     version, (unsigned long)sequence, key_id);
    if (n < 0 || (size_t)n >= cap) {
        ota_test_die("manifest body does not fit");
    }
    return (size_t)n;
}
