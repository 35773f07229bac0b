/* nvs_blob.c — version-2 blobs: chunked writes, reads, compares, erases and init-time repair. */
#include "nvs_blob.h"

#include <stdlib.h>
#include <string.h>

#include "nvs.h"

static void nvs_blob_erase_chunks(nvs_storage_t *st, uint8_t ns, const char *key, uint8_t first,
                                  uint8_t end, bool purge) {
    for (unsigned chunk = first; chunk < end; chunk++) {
        nvs_page_t *page = NULL;
        nvs_item_t item;
        size_t index = 0;
        if (nvs_storage_find(st, ns, NVS_ITEM_BLOB_DATA, key, &page, &item, (uint8_t)chunk,
                             NVS_VER_ANY, &index) == ESP_OK) {
            nvs_page_erase_entry_and_span(page, index, purge);
        }
    }
}

/* Marks the active page full and takes a new one. */
static esp_err_t nvs_blob_next_page(nvs_storage_t *st, nvs_page_t *page) {
    if (page->state != NVS_PAGE_FULL) {
        esp_err_t err = nvs_page_mark_full(page);
        if (err != ESP_OK) {
            return err;
        }
    }
    return nvs_pagemanager_request_new_page(&st->pm);
}

esp_err_t nvs_blob_write(nvs_storage_t *st, uint8_t ns, const char *key, const void *data,
                         size_t size, uint8_t chunk_start, bool purge) {
    uint8_t chunk_count = 0;
    size_t remaining = size;
    size_t offset = 0;
    esp_err_t err = ESP_OK;
    uint32_t max_pages = st->pm.page_count - 1u;
    if (max_pages > (NVS_CHUNK_ANY - 1u) / 2u) {
        max_pages = (NVS_CHUNK_ANY - 1u) / 2u;
    }
    if (size > (size_t)max_pages * NVS_CHUNK_MAX_BYTES) {
        return ESP_ERR_NVS_VALUE_TOO_LONG;
    }
    for (;;) {
        nvs_page_t *page = nvs_pagemanager_back(&st->pm);
        size_t tailroom = nvs_page_var_tailroom(page);
        if (chunk_count == 0 && (tailroom < size || (tailroom == 0 && size == 0)) &&
            tailroom < NVS_CHUNK_MAX_BYTES / 10u) {
            /* Too little room for a first chunk here: start on a new page. */
            err = nvs_blob_next_page(st, page);
            if (err != ESP_OK) {
                return err;
            }
            if (nvs_page_var_tailroom(nvs_pagemanager_back(&st->pm)) == tailroom) {
                return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
            }
            continue;
        }
        if (tailroom == 0) {
            err = ESP_ERR_NVS_NOT_ENOUGH_SPACE;
            break;
        }
        size_t chunk_size = remaining > tailroom ? tailroom : remaining;
        remaining -= chunk_size;
        err = nvs_page_write_item(page, ns, NVS_ITEM_BLOB_DATA, key, (const uint8_t *)data + offset,
                                  chunk_size, (uint8_t)(chunk_start + chunk_count));
        chunk_count++;
        if (err != ESP_OK) {
            break;
        }
        if (remaining > 0 || tailroom - chunk_size < NVS_ENTRY_BYTES) {
            err = nvs_blob_next_page(st, page);
            if (err != ESP_OK) {
                break;
            }
        }
        offset += chunk_size;
        if (remaining == 0) {
            uint8_t index_data[8];
            uint32_t size32 = (uint32_t)size;
            memset(index_data, 0xFF, sizeof(index_data));
            memcpy(index_data, &size32, 4);
            index_data[4] = chunk_count;
            index_data[5] = chunk_start;
            err = nvs_page_write_item(nvs_pagemanager_back(&st->pm), ns, NVS_ITEM_BLOB_IDX, key,
                                      index_data, sizeof(index_data), NVS_CHUNK_ANY);
            break;
        }
    }
    if (err != ESP_OK) {
        nvs_blob_erase_chunks(st, ns, key, chunk_start, (uint8_t)(chunk_start + chunk_count),
                              purge);
    }
    return err;
}

esp_err_t nvs_blob_read(nvs_storage_t *st, uint8_t ns, const char *key, void *data, size_t size) {
    nvs_page_t *page = NULL;
    nvs_item_t item;
    size_t index = 0;
    esp_err_t err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_IDX, key, &page, &item, NVS_CHUNK_ANY,
                                     NVS_VER_ANY, NULL);
    if (err != ESP_OK) {
        return err;
    }
    uint8_t count = nvs_item_blob_chunks(&item);
    uint8_t start = nvs_item_blob_start(&item);
    if (size != nvs_item_blob_size(&item)) {
        return ESP_FAIL;
    }
    size_t offset = 0;
    for (uint8_t n = 0; n < count; n++) {
        err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_DATA, key, &page, &item, (uint8_t)(start + n),
                               NVS_VER_ANY, &index);
        if (err != ESP_OK) {
            if (err == ESP_ERR_NVS_NOT_FOUND) {
                break;
            }
            return err;
        }
        if (nvs_item_var_size(&item) > size - offset) {
            err = ESP_ERR_NVS_INVALID_LENGTH;
            break;
        }
        err = nvs_page_read_var_data(page, &item, index, (uint8_t *)data + offset);
        if (err != ESP_OK) {
            return err;
        }
        offset += nvs_item_var_size(&item);
    }
    if (err == ESP_ERR_NVS_NOT_FOUND || err == ESP_ERR_NVS_INVALID_LENGTH) {
        nvs_blob_erase(st, ns, key, true, NVS_VER_ANY);
    }
    return offset == size ? err : ESP_FAIL;
}

esp_err_t nvs_blob_compare(nvs_storage_t *st, uint8_t ns, const char *key, const void *data,
                           size_t size) {
    nvs_page_t *page = NULL;
    nvs_item_t item;
    esp_err_t err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_IDX, key, &page, &item, NVS_CHUNK_ANY,
                                     NVS_VER_ANY, NULL);
    if (err != ESP_OK) {
        return err;
    }
    uint8_t count = nvs_item_blob_chunks(&item);
    uint8_t start = nvs_item_blob_start(&item);
    if (size != nvs_item_blob_size(&item)) {
        return NVS_ERR_CONTENT_DIFFERS;
    }
    size_t offset = 0;
    for (uint8_t n = 0; n < count; n++) {
        err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_DATA, key, &page, &item, (uint8_t)(start + n),
                               NVS_VER_ANY, NULL);
        if (err != ESP_OK) {
            if (err == ESP_ERR_NVS_NOT_FOUND) {
                break;
            }
            return err;
        }
        size_t chunk_size = nvs_item_var_size(&item);
        if (chunk_size > size - offset || nvs_crc32(0xFFFFFFFFu, (const uint8_t *)data + offset,
                                                    chunk_size) != nvs_item_var_crc(&item)) {
            return NVS_ERR_CONTENT_DIFFERS;
        }
        err = nvs_page_cmp_item(page, ns, NVS_ITEM_BLOB_DATA, key, (const uint8_t *)data + offset,
                                chunk_size, (uint8_t)(start + n), NVS_VER_ANY);
        if (err != ESP_OK) {
            return err;
        }
        offset += chunk_size;
    }
    return offset == size ? err : ESP_FAIL;
}

esp_err_t nvs_blob_erase(nvs_storage_t *st, uint8_t ns, const char *key, bool purge,
                         uint8_t chunk_start) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    nvs_page_t *page = NULL;
    nvs_item_t item;
    size_t index = 0;
    esp_err_t err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_IDX, key, &page, &item, NVS_CHUNK_ANY,
                                     chunk_start, &index);
    if (err != ESP_OK) {
        return err;
    }
    uint8_t count = nvs_item_blob_chunks(&item);
    err = nvs_page_erase_entry_and_span(page, index, purge);
    if (err != ESP_OK) {
        return err;
    }
    if (chunk_start == NVS_VER_ANY) {
        err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_IDX, key, &page, &item, NVS_CHUNK_ANY,
                               chunk_start, &index);
        if (err == ESP_OK) {
            err = nvs_page_erase_entry_and_span(page, index, purge);
        }
        if (err != ESP_OK && err != ESP_ERR_NVS_NOT_FOUND) {
            return err;
        }
        for (uint32_t i = 0; i < st->pm.used_len; i++) {
            nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
            index = 0;
            do {
                err = nvs_page_find_item(p, ns, NVS_ITEM_BLOB_DATA, key, &index, &item,
                                         NVS_CHUNK_ANY, NVS_VER_ANY);
                if (err == ESP_ERR_NVS_NOT_FOUND) {
                    break;
                }
                if (err == ESP_OK) {
                    err = nvs_page_erase_entry_and_span(p, index, purge);
                    index += item.span;
                }
                if (err != ESP_OK) {
                    return err;
                }
            } while (index < NVS_ENTRY_COUNT);
        }
        return ESP_OK;
    }
    if (chunk_start != NVS_VER_0 && chunk_start != NVS_VER_1) {
        return ESP_OK;
    }
    uint8_t first = chunk_start;
    for (unsigned chunk = first; chunk < (unsigned)first + count; chunk++) {
        err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_DATA, key, &page, &item, (uint8_t)chunk,
                               NVS_VER_ANY, &index);
        if (err == ESP_OK) {
            err = nvs_page_erase_entry_and_span(page, index, purge);
        }
        if (err != ESP_OK) {
            return err;
        }
    }
    return ESP_OK;
}

typedef struct {
    char key[NVS_KEY_BYTES];
    uint8_t ns;
    uint8_t start;
    uint8_t count;
    uint32_t size;
    uint32_t seen_size;
    uint32_t seen_count;
    bool dropped;
} nvs_blob_index_t;

/* The index an item of a blob version family belongs to (chunk in [start, family end)). */
static nvs_blob_index_t *nvs_blob_family(nvs_blob_index_t *list, size_t len, const nvs_item_t *item,
                                         bool whole_family) {
    for (size_t i = 0; i < len; i++) {
        nvs_blob_index_t *e = &list[i];
        unsigned end = whole_family ? (e->start == NVS_VER_0 ? NVS_VER_1 : NVS_VER_ANY)
                                    : (unsigned)e->start + e->count;
        if (!e->dropped && strncmp(item->key, e->key, NVS_KEY_BYTES - 1u) == 0 &&
            item->ns == e->ns && item->chunk >= e->start && item->chunk < end) {
            return e;
        }
    }
    return NULL;
}

esp_err_t nvs_blob_cleanup(nvs_storage_t *st) {
    size_t cap = (size_t)st->pm.page_count * NVS_ENTRY_COUNT;
    nvs_blob_index_t *list = calloc(cap == 0 ? 1 : cap, sizeof(*list));
    if (list == NULL) {
        return ESP_ERR_NO_MEM;
    }
    size_t len = 0;
    nvs_item_t item;
    for (uint32_t i = 0; i < st->pm.used_len; i++) {
        nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
        size_t index = 0;
        while (len < cap && nvs_page_find_item(p, NVS_NS_ANY, NVS_ITEM_BLOB_IDX, NULL, &index,
                                               &item, NVS_CHUNK_ANY, NVS_VER_ANY) == ESP_OK) {
            nvs_blob_index_t *e = &list[len++];
            memcpy(e->key, item.key, NVS_KEY_BYTES);
            e->key[NVS_KEY_BYTES - 1u] = '\0';
            e->ns = item.ns;
            e->start = nvs_item_blob_start(&item);
            e->count = nvs_item_blob_chunks(&item);
            e->size = nvs_item_blob_size(&item);
            index += item.span;
        }
    }
    for (uint32_t i = 0; i < st->pm.used_len; i++) {
        nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
        size_t index = 0;
        while (nvs_page_find_item(p, NVS_NS_ANY, NVS_ITEM_BLOB_DATA, NULL, &index, &item,
                                  NVS_CHUNK_ANY, NVS_VER_ANY) == ESP_OK) {
            nvs_blob_index_t *e = nvs_blob_family(list, len, &item, true);
            if (e != NULL) {
                e->seen_size += nvs_item_var_size(&item);
                e->seen_count++;
            }
            index += item.span;
        }
    }
    for (size_t n = 0; n < len; n++) {
        nvs_blob_index_t *e = &list[n];
        if (e->seen_size == e->size && e->seen_count == e->count) {
            continue;
        }
        for (uint32_t i = 0; i < st->pm.used_len; i++) {
            nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
            if (p->state == NVS_PAGE_CORRUPT || p->state == NVS_PAGE_INVALID ||
                p->state == NVS_PAGE_UNINITIALIZED) {
                continue;
            }
            if (nvs_page_erase_item(p, e->ns, NVS_ITEM_BLOB_IDX, e->key, true, NVS_CHUNK_ANY,
                                    e->start) == ESP_OK) {
                break;
            }
        }
        e->dropped = true;
    }
    for (uint32_t i = 0; i < st->pm.used_len; i++) {
        nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
        size_t index = 0;
        while (nvs_page_find_item(p, NVS_NS_ANY, NVS_ITEM_BLOB_DATA, NULL, &index, &item,
                                  NVS_CHUNK_ANY, NVS_VER_ANY) == ESP_OK) {
            if (nvs_blob_family(list, len, &item, false) == NULL) {
                char key[NVS_KEY_BYTES] = {0};
                memcpy(key, item.key, NVS_KEY_BYTES - 1u);
                nvs_page_erase_item(p, item.ns, item.type, key, true, item.chunk, NVS_VER_ANY);
            }
            index += item.span;
        }
    }
    free(list);
    return ESP_OK;
}
