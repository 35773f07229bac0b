/*
 * nvs_blob.h — blobs in NVS format version 2 (Storage::writeMultiPageBlob and friends): the
 * value is split into BLOB_DATA chunks (at most one per page, chunk indexes from the version
 * offset 0 or 0x80), then one BLOB_IDX item (size, chunk count, version offset) is written.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvs_storage.h"

esp_err_t nvs_blob_write(nvs_storage_t *st, uint8_t ns, const char *key, const void *data,
                         size_t size, uint8_t chunk_start, bool purge);
/* size must equal the blob's size. */
esp_err_t nvs_blob_read(nvs_storage_t *st, uint8_t ns, const char *key, void *data, size_t size);
esp_err_t nvs_blob_compare(nvs_storage_t *st, uint8_t ns, const char *key, const void *data,
                           size_t size);
/* Erases the index of version chunk_start (NVS_VER_ANY: every index) and its chunks. */
esp_err_t nvs_blob_erase(nvs_storage_t *st, uint8_t ns, const char *key, bool purge,
                         uint8_t chunk_start);
/* Storage::init's repair: indexes whose chunks do not add up, then chunks no index owns. */
esp_err_t nvs_blob_cleanup(nvs_storage_t *st);

/* Storage::findItem: the first page (by sequence number) holding a matching item. */
esp_err_t nvs_storage_find(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key,
                           nvs_page_t **page, nvs_item_t *item, uint8_t chunk, uint8_t ver,
                           size_t *index);
