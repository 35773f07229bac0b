/*
 * sim_nvs.h — reads settings from an NVS partition image (read-only).
 *
 * The format is ESP-IDF's NVS v2 (components/nvs_flash, "NVS internals"), as
 * esp-idf-nvs-partition-gen writes it for `csi-ota provision`: 4 KiB pages
 * with a 32-byte header (state, sequence number, version, CRC-32 of bytes
 * 4..27), a 32-byte entry-state bitmap (2 bits per entry: 11 empty, 10
 * written, 00 erased) and 126 entries of 32 bytes: namespace index, type,
 * span, chunk index, CRC-32 (of bytes 0..3 and 8..31), key[16], data[8].
 * Namespaces are U8 entries of namespace 0 whose value is the index; a string
 * (type 0x21) holds size/CRC in its data field and its bytes in the next
 * span − 1 entries. CRCs are esp_rom_crc32_le(0xFFFFFFFF, …).
 *
 * Entries whose CRC does not match are skipped, as NVS does; pages are read
 * in sequence-number order and a later write of a key wins.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_NVS_PAGE_BYTES 4096u
#define SIM_NVS_KEY_MAX_CHARS 15u

typedef enum {
    SIM_NVS_OK = 0,
    SIM_NVS_NOT_FOUND,     /* no namespace, no key, or only entries with bad CRCs */
    SIM_NVS_TYPE_MISMATCH, /* the key exists with another type */
    SIM_NVS_TOO_LONG,      /* the string does not fit the caller's buffer */
    SIM_NVS_ERR_ARG,       /* bad arguments (size not a whole number of pages, long key) */
} sim_nvs_result_t;

sim_nvs_result_t sim_nvs_get_u8(const uint8_t *partition, size_t len_bytes, const char *ns,
                                const char *key, uint8_t *out);
sim_nvs_result_t sim_nvs_get_u32(const uint8_t *partition, size_t len_bytes, const char *ns,
                                 const char *key, uint32_t *out);
/* Copies the NUL-terminated string into out (cap bytes including the NUL). */
sim_nvs_result_t sim_nvs_get_str(const uint8_t *partition, size_t len_bytes, const char *ns,
                                 const char *key, char *out, size_t cap);

/* The NVS type byte (0x01 u8, 0x04 u32, 0x21 string, 0x42 blob, …) of a key. */
sim_nvs_result_t sim_nvs_get_type(const uint8_t *partition, size_t len_bytes, const char *ns,
                                  const char *key, uint8_t *type);
/* True when the namespace has an entry (it was written at least once). */
bool sim_nvs_namespace_exists(const uint8_t *partition, size_t len_bytes, const char *ns);

const char *sim_nvs_result_str(sim_nvs_result_t result);

#ifdef __cplusplus
}
#endif
