/*
 * nvs_item.h — the on-flash format of ESP-IDF's NVS (components/nvs_flash, format version 2):
 * 4 KiB pages = a 32-byte header (state, sequence number, version 0xFE, CRC-32 of bytes 4..27),
 * a 32-byte entry-state bitmap (2 bits per entry: 11 empty, 10 written, 00 erased) and 126
 * entries of 32 bytes. An item is one entry (namespace index, type, span, chunk index, CRC-32
 * of bytes 0..3 + 8..31, key[16], data[8]); strings and blob chunks are followed by span - 1
 * entries of raw data. CRCs are esp_rom_crc32_le(0xFFFFFFFF, ...).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#define NVS_PAGE_BYTES 4096u
#define NVS_ENTRY_BYTES 32u
#define NVS_ENTRY_COUNT 126u
#define NVS_ENTRY_TABLE_OFFSET 32u
#define NVS_ENTRY_DATA_OFFSET 64u
#define NVS_CHUNK_MAX_BYTES (NVS_ENTRY_BYTES * (NVS_ENTRY_COUNT - 1u)) /* 4000 */
#define NVS_FORMAT_VERSION 0xFEu /* version 2; "decrement to upgrade" */
#define NVS_INVALID_ENTRY SIZE_MAX
#define NVS_NS_INDEX 0u /* namespace 0 holds the namespace entries */
#define NVS_NS_ANY 0xFFu
#define NVS_CHUNK_ANY 0xFFu
#define NVS_KEY_BYTES 16u
#define NVS_KEY_MAX_CHARS 15u

/* Page states: each step clears one more bit of the erased word. */
#define NVS_PAGE_UNINITIALIZED 0xFFFFFFFFu
#define NVS_PAGE_ACTIVE 0xFFFFFFFEu
#define NVS_PAGE_FULL 0xFFFFFFFCu
#define NVS_PAGE_FREEING 0xFFFFFFF8u
#define NVS_PAGE_CORRUPT 0xFFFFFFF0u
#define NVS_PAGE_INVALID 0u

/* Entry states in the bitmap. */
#define NVS_ENTRY_EMPTY 3u
#define NVS_ENTRY_WRITTEN 2u
#define NVS_ENTRY_ERASED 0u
#define NVS_ENTRY_ILLEGAL 1u

/* Item types (nvs_handle.hpp ItemType). */
#define NVS_ITEM_U8 0x01u
#define NVS_ITEM_I8 0x11u
#define NVS_ITEM_U16 0x02u
#define NVS_ITEM_I16 0x12u
#define NVS_ITEM_U32 0x04u
#define NVS_ITEM_I32 0x14u
#define NVS_ITEM_U64 0x08u
#define NVS_ITEM_I64 0x18u
#define NVS_ITEM_FLOAT 0x24u
#define NVS_ITEM_DOUBLE 0x28u
#define NVS_ITEM_SZ 0x21u
#define NVS_ITEM_BLOB 0x41u /* version-1 blob, read only */
#define NVS_ITEM_BLOB_DATA 0x42u
#define NVS_ITEM_BLOB_IDX 0x48u
#define NVS_ITEM_ANY 0xFFu

/* Blob versions: the chunk indexes of one blob start at 0 or at 0x80, alternating per write. */
#define NVS_VER_0 0x00u
#define NVS_VER_1 0x80u
#define NVS_VER_ANY 0xFFu

/* ESP-IDF's ESP_ERR_FLASH_OP_FAIL / NVS's private "content differs". */
#define NVS_ERR_FLASH_OP_FAIL 0x4001
#define NVS_ERR_CONTENT_DIFFERS (0x1100 + 0x18)

typedef struct {
    uint8_t ns;
    uint8_t type;
    uint8_t span;
    uint8_t chunk;
    uint32_t crc32;
    char key[NVS_KEY_BYTES];
    uint8_t data[8]; /* value, or var: size u16, reserved u16, data crc u32; or blob index */
} nvs_item_t;

_Static_assert(sizeof(nvs_item_t) == NVS_ENTRY_BYTES, "an NVS item is one 32-byte entry");

/* The partition the engine works on: byte offsets inside it (host byte order is little-endian). */
typedef struct {
    void *ctx;
    esp_err_t (*read)(void *ctx, uint32_t offset, void *buf, size_t len);
    esp_err_t (*write)(void *ctx, uint32_t offset, const void *buf, size_t len);
    esp_err_t (*erase)(void *ctx, uint32_t offset, size_t len);
    /* NVS encryption (nvs_crypt.h): entries are XTS-AES encrypted on flash; NULL: in clear. */
    const struct nvs_crypt *crypt;
} nvs_io_t;

uint32_t nvs_crc32(uint32_t crc, const void *buf, size_t len);
/* An item header as Item(ns, type, span, key, chunk) builds it: key NUL-padded, data 0xFF. */
void nvs_item_init(nvs_item_t *item, uint8_t ns, uint8_t type, uint8_t span, const char *key,
                   uint8_t chunk);
uint32_t nvs_item_crc(const nvs_item_t *item);
/* Item::checkHeaderConsistency: CRC, known type, span that fits the page from entry_index. */
bool nvs_item_consistent(const nvs_item_t *item, size_t entry_index);
bool nvs_type_is_var(uint8_t type);
/* True when the stored key equals key (strncmp over 15 characters, as NVS compares). */
bool nvs_item_key_is(const nvs_item_t *item, const char *key);

uint16_t nvs_item_var_size(const nvs_item_t *item);
uint32_t nvs_item_var_crc(const nvs_item_t *item);
uint32_t nvs_item_blob_size(const nvs_item_t *item);
uint8_t nvs_item_blob_chunks(const nvs_item_t *item);
uint8_t nvs_item_blob_start(const nvs_item_t *item);
