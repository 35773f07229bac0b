/*
 * nvs_storage.h — ESP-IDF's nvs::Storage over one NVS partition: namespaces (U8 entries of
 * namespace 0 whose value is the index), typed items, strings, blobs in format version 2
 * (BLOB_DATA chunks, one per page at most, then a BLOB_IDX; versions alternate between chunk
 * index 0 and 0x80 so that the old blob stays whole until the new index is written), overwrite
 * = write the new item, then erase the old one, and the init-time cleanup of blob indexes whose
 * chunks are incomplete and of chunks no index owns.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvs_pagemanager.h"

#define NVS_NAMESPACES_MAX 254u

typedef struct {
    char name[NVS_KEY_BYTES];
    uint8_t index;
} nvs_namespace_t;

typedef struct {
    nvs_pagemanager_t pm;
    bool active;
    nvs_namespace_t namespaces[NVS_NAMESPACES_MAX];
    uint32_t namespace_count;
    bool namespace_used[256];
} nvs_storage_t;

/* Loads the partition (io, page_count 4 KiB pages) and repairs what a power cut left. */
esp_err_t nvs_storage_init(nvs_storage_t *st, const nvs_io_t *io, uint32_t page_count);
void nvs_storage_deinit(nvs_storage_t *st);

esp_err_t nvs_storage_open_namespace(nvs_storage_t *st, const char *name, bool can_create,
                                     uint8_t *index);
/* type: NVS_ITEM_U8 … NVS_ITEM_I64, NVS_ITEM_SZ (size includes the NUL), NVS_ITEM_BLOB. */
esp_err_t nvs_storage_write(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key,
                            const void *data, size_t size, bool purge);
/* size must be the item's exact data size (nvs_storage_data_size) for strings and blobs. */
esp_err_t nvs_storage_read(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key, void *data,
                           size_t size);
esp_err_t nvs_storage_data_size(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key,
                                size_t *size);
/* The stored type of key (NVS_ITEM_BLOB_IDX for a version-2 blob). */
esp_err_t nvs_storage_find_key(nvs_storage_t *st, uint8_t ns, const char *key, uint8_t *type);
esp_err_t nvs_storage_erase(nvs_storage_t *st, uint8_t ns, const char *key, bool purge);
esp_err_t nvs_storage_erase_namespace(nvs_storage_t *st, uint8_t ns, bool purge);
