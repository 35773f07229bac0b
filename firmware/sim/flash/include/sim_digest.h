/*
 * sim_digest.h — MD5 (partition table check) and SHA-256 (appended image
 * digest) for the flash model, written from RFC 1321 and FIPS 180-4 so that
 * the library links nothing but libc.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The 64-byte block buffer both hashes share (Merkle-Damgard framing). */
typedef struct {
    uint64_t length_bytes;
    uint8_t block[64];
    size_t block_len;
} sim_digest_stream_t;

typedef struct {
    uint32_t state[4];
    sim_digest_stream_t stream;
} sim_md5_t;

void sim_md5_init(sim_md5_t *ctx);
void sim_md5_update(sim_md5_t *ctx, const void *data, size_t len);
void sim_md5_finish(sim_md5_t *ctx, uint8_t digest[16]);

typedef struct {
    uint32_t state[8];
    sim_digest_stream_t stream;
} sim_sha256_t;

void sim_sha256_init(sim_sha256_t *ctx);
void sim_sha256_update(sim_sha256_t *ctx, const void *data, size_t len);
void sim_sha256_finish(sim_sha256_t *ctx, uint8_t digest[32]);

#ifdef __cplusplus
}
#endif
