/*
 * ota_test_support.h — helpers of the core's unit tests: a P-256 key made
 * with OpenSSL and a signer producing manifests exactly as docs/manifest.md
 * (and csi-ota release create) writes them.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ota_agent.h"

typedef struct {
    void *pkey; /* EVP_PKEY */
    ota_trusted_key_t trusted;
} ota_test_key_t;

/* A fresh P-256 key; trusted.key_id = SHA-256(raw)[:8]. */
void ota_test_key_generate(ota_test_key_t *key);
void ota_test_key_free(ota_test_key_t *key);

/* Appends "signature=<hex>\n" signing buf[0..len) with key; returns the new length. */
size_t ota_test_sign(const ota_test_key_t *key, char *buf, size_t len, size_t cap);

/* The unsigned part of a valid manifest (every key, writer's order, notes line last). */
size_t ota_test_manifest_body(char *buf, size_t cap, const char *version, uint32_t sequence,
                              const ota_test_key_t *key);
