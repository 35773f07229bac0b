/* nvs_item.c — NVS item headers: construction, CRCs and the consistency check of a header. */
#include "nvs_item.h"

#include <string.h>

#include "sim_otadata.h" /* sim_crc32_le: esp_rom_crc32_le */

uint32_t nvs_crc32(uint32_t crc, const void *buf, size_t len) {
    return sim_crc32_le(crc, buf, len);
}

void nvs_item_init(nvs_item_t *item, uint8_t ns, uint8_t type, uint8_t span, const char *key,
                   uint8_t chunk) {
    item->ns = ns;
    item->type = type;
    item->span = span;
    item->chunk = chunk;
    item->crc32 = 0xFFFFFFFFu;
    memset(item->key, 0, sizeof(item->key));
    if (key != NULL) {
        strncpy(item->key, key, NVS_KEY_MAX_CHARS);
    }
    memset(item->data, 0xFF, sizeof(item->data));
}

uint32_t nvs_item_crc(const nvs_item_t *item) {
    const uint8_t *raw = (const uint8_t *)item;
    uint32_t crc = nvs_crc32(0xFFFFFFFFu, raw, 4);
    crc = nvs_crc32(crc, item->key, sizeof(item->key));
    return nvs_crc32(crc, item->data, sizeof(item->data));
}

bool nvs_type_is_var(uint8_t type) {
    return type == NVS_ITEM_BLOB || type == NVS_ITEM_SZ || type == NVS_ITEM_BLOB_DATA;
}

bool nvs_item_key_is(const nvs_item_t *item, const char *key) {
    return strncmp(key, item->key, NVS_KEY_MAX_CHARS) == 0;
}

uint16_t nvs_item_var_size(const nvs_item_t *item) {
    return (uint16_t)(item->data[0] | (item->data[1] << 8));
}

uint32_t nvs_item_var_crc(const nvs_item_t *item) {
    uint32_t crc;
    memcpy(&crc, item->data + 4, sizeof(crc));
    return crc;
}

uint32_t nvs_item_blob_size(const nvs_item_t *item) {
    uint32_t size;
    memcpy(&size, item->data, sizeof(size));
    return size;
}

uint8_t nvs_item_blob_chunks(const nvs_item_t *item) {
    return item->data[4];
}

uint8_t nvs_item_blob_start(const nvs_item_t *item) {
    return item->data[5];
}

bool nvs_item_consistent(const nvs_item_t *item, size_t entry_index) {
    if (item->crc32 != nvs_item_crc(item)) {
        return false;
    }
    switch (item->type) {
    case NVS_ITEM_U8:
    case NVS_ITEM_I8:
    case NVS_ITEM_U16:
    case NVS_ITEM_I16:
    case NVS_ITEM_U32:
    case NVS_ITEM_I32:
    case NVS_ITEM_U64:
    case NVS_ITEM_I64:
    case NVS_ITEM_FLOAT:
    case NVS_ITEM_DOUBLE:
        return item->span == 1;
    case NVS_ITEM_BLOB_IDX: {
        const uint32_t max_bytes = (255u / 2u) * (NVS_ENTRY_COUNT - 1u) * NVS_ENTRY_BYTES;
        return item->span == 1 && item->chunk == NVS_CHUNK_ANY &&
               nvs_item_blob_size(item) <= max_bytes;
    }
    case NVS_ITEM_SZ:
    case NVS_ITEM_BLOB:
    case NVS_ITEM_BLOB_DATA: {
        if (item->type == NVS_ITEM_BLOB_DATA && item->chunk == NVS_CHUNK_ANY) {
            return false;
        }
        /* As ESP-IDF: the entry index is taken as a uint8_t. */
        uint8_t index = (uint8_t)entry_index;
        uint16_t max_bytes = (uint16_t)(((NVS_ENTRY_COUNT - index) - 1u) * NVS_ENTRY_BYTES);
        uint16_t size = nvs_item_var_size(item);
        if (size > max_bytes || item->span > (uint8_t)(NVS_ENTRY_COUNT - index)) {
            return false;
        }
        uint8_t span = (uint8_t)(((size_t)size + NVS_ENTRY_BYTES - 1u) / NVS_ENTRY_BYTES + 1u);
        return item->span == span;
    }
    default:
        return false;
    }
}
