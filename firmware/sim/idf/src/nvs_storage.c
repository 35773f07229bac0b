/* nvs_storage.c — namespaces, item writes and overwrites, reads and erases over the pages. */
#include "nvs_storage.h"

#include <string.h>

#include "nvs.h"
#include "nvs_blob.h"

esp_err_t nvs_storage_find(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key,
                           nvs_page_t **page, nvs_item_t *item, uint8_t chunk, uint8_t ver,
                           size_t *index) {
    for (uint32_t i = 0; i < st->pm.used_len; i++) {
        nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
        size_t at = 0;
        if (nvs_page_find_item(p, ns, type, key, &at, item, chunk, ver) == ESP_OK) {
            *page = p;
            if (index != NULL) {
                *index = at;
            }
            return ESP_OK;
        }
    }
    return ESP_ERR_NVS_NOT_FOUND;
}

static esp_err_t nvs_storage_load_namespaces(nvs_storage_t *st) {
    st->namespace_count = 0;
    memset(st->namespace_used, 0, sizeof(st->namespace_used));
    for (uint32_t i = 0; i < st->pm.used_len; i++) {
        nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
        size_t index = 0;
        nvs_item_t item;
        while (nvs_page_find_item(p, NVS_NS_INDEX, NVS_ITEM_U8, NULL, &index, &item, NVS_CHUNK_ANY,
                                  NVS_VER_ANY) == ESP_OK) {
            if (st->namespace_count < NVS_NAMESPACES_MAX) {
                nvs_namespace_t *entry = &st->namespaces[st->namespace_count++];
                memcpy(entry->name, item.key, NVS_KEY_BYTES);
                entry->name[NVS_KEY_BYTES - 1u] = '\0';
                entry->index = item.data[0];
            }
            st->namespace_used[item.data[0]] = true;
            index += item.span;
        }
    }
    st->namespace_used[0] = true;
    st->namespace_used[255] = true;
    return ESP_OK;
}

esp_err_t nvs_storage_init(nvs_storage_t *st, const nvs_io_t *io, uint32_t page_count) {
    memset(st, 0, sizeof(*st));
    esp_err_t err = nvs_pagemanager_load(&st->pm, io, page_count);
    if (err != ESP_OK) {
        return err;
    }
    nvs_storage_load_namespaces(st);
    err = nvs_blob_cleanup(st);
    if (err != ESP_OK) {
        return err;
    }
    st->active = true;
    return ESP_OK;
}

void nvs_storage_deinit(nvs_storage_t *st) {
    nvs_pagemanager_free(&st->pm);
    st->active = false;
}

esp_err_t nvs_storage_open_namespace(nvs_storage_t *st, const char *name, bool can_create,
                                     uint8_t *index) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    for (uint32_t i = 0; i < st->namespace_count; i++) {
        if (strncmp(name, st->namespaces[i].name, NVS_KEY_BYTES - 1u) == 0) {
            *index = st->namespaces[i].index;
            return ESP_OK;
        }
    }
    if (!can_create) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    unsigned ns;
    for (ns = 1; ns < 255u && st->namespace_used[ns]; ns++) {
    }
    if (ns == 255u || st->namespace_count >= NVS_NAMESPACES_MAX) {
        return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
    }
    uint8_t value = (uint8_t)ns;
    esp_err_t err = nvs_storage_write(st, NVS_NS_INDEX, NVS_ITEM_U8, name, &value, 1, true);
    if (err != ESP_OK) {
        return err;
    }
    st->namespace_used[ns] = true;
    nvs_namespace_t *entry = &st->namespaces[st->namespace_count++];
    memset(entry->name, 0, sizeof(entry->name));
    strncpy(entry->name, name, NVS_KEY_BYTES - 1u);
    entry->index = value;
    *index = value;
    return ESP_OK;
}

/* Writes a one-page item to the active page, moving to a new page once when it is full. */
static esp_err_t nvs_storage_write_single(nvs_storage_t *st, uint8_t ns, uint8_t type,
                                          const char *key, const void *data, size_t size) {
    nvs_page_t *page = nvs_pagemanager_back(&st->pm);
    esp_err_t err = nvs_page_write_item(page, ns, type, key, data, size, NVS_CHUNK_ANY);
    if (err != ESP_ERR_NVS_PAGE_FULL) {
        return err;
    }
    if (page->state != NVS_PAGE_FULL) {
        err = nvs_page_mark_full(page);
        if (err != ESP_OK) {
            return err;
        }
    }
    err = nvs_pagemanager_request_new_page(&st->pm);
    if (err != ESP_OK) {
        return err;
    }
    err = nvs_page_write_item(nvs_pagemanager_back(&st->pm), ns, type, key, data, size,
                              NVS_CHUNK_ANY);
    return err == ESP_ERR_NVS_PAGE_FULL ? ESP_ERR_NVS_NOT_ENOUGH_SPACE : err;
}

esp_err_t nvs_storage_write(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key,
                            const void *data, size_t size, bool purge) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    nvs_page_t *found = NULL;
    size_t index = 0;
    uint32_t found_seq = UINT32_MAX;
    bool same_type = false;
    nvs_item_t item;
    esp_err_t err;
    if (type == NVS_ITEM_BLOB) {
        err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_IDX, key, &found, &item, NVS_CHUNK_ANY,
                               NVS_VER_ANY, &index);
        same_type = err == ESP_OK;
    } else {
        err =
            nvs_storage_find(st, ns, type, key, &found, &item, NVS_CHUNK_ANY, NVS_VER_ANY, &index);
        if (err == ESP_OK) {
            same_type = true;
            nvs_page_seq(found, &found_seq);
        }
    }
    if (found == NULL) {
        err = nvs_storage_find(st, ns, NVS_ITEM_ANY, key, &found, &item, NVS_CHUNK_ANY, NVS_VER_ANY,
                               &index);
        if (err == ESP_OK) {
            nvs_page_seq(found, &found_seq);
        }
    }
    if (type == NVS_ITEM_BLOB) {
        uint8_t next_start = NVS_VER_0;
        if (same_type) {
            if (nvs_blob_compare(st, ns, key, data, size) == ESP_OK) {
                return ESP_OK;
            }
            next_start = nvs_item_blob_start(&item) == NVS_VER_1 ? NVS_VER_0 : NVS_VER_1;
        }
        err = nvs_blob_write(st, ns, key, data, size, next_start, purge);
        if (err == ESP_ERR_NVS_PAGE_FULL) {
            return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
        }
    } else {
        if (same_type && nvs_page_cmp_item(found, ns, type, key, data, size, NVS_CHUNK_ANY,
                                           NVS_VER_ANY) == ESP_OK) {
            return ESP_OK;
        }
        err = nvs_storage_write_single(st, ns, type, key, data, size);
    }
    if (err != ESP_OK || found == NULL) {
        return err;
    }
    /* The new value is in place: the old one goes. */
    if (item.type == NVS_ITEM_BLOB_IDX) {
        err = nvs_blob_erase(st, ns, key, purge, nvs_item_blob_start(&item));
        return err == NVS_ERR_FLASH_OP_FAIL ? ESP_ERR_NVS_REMOVE_FAILED : err;
    }
    uint32_t seq_now;
    bool relocated = (found->state != NVS_PAGE_ACTIVE && found->state != NVS_PAGE_FULL) ||
                     nvs_page_seq(found, &seq_now) != ESP_OK || seq_now != found_seq;
    if (relocated) {
        err = nvs_storage_find(st, ns, item.type, key, &found, &item, NVS_CHUNK_ANY, NVS_VER_ANY,
                               &index);
        if (err != ESP_OK) {
            return err;
        }
    }
    err = nvs_page_erase_entry_and_span(found, index, purge);
    return err == NVS_ERR_FLASH_OP_FAIL ? ESP_ERR_NVS_REMOVE_FAILED : err;
}

esp_err_t nvs_storage_read(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key, void *data,
                           size_t size) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    if (type == NVS_ITEM_BLOB) {
        esp_err_t err = nvs_blob_read(st, ns, key, data, size);
        if (err != ESP_ERR_NVS_NOT_FOUND) {
            return err;
        }
    }
    nvs_page_t *found = NULL;
    nvs_item_t item;
    esp_err_t err =
        nvs_storage_find(st, ns, type, key, &found, &item, NVS_CHUNK_ANY, NVS_VER_ANY, NULL);
    if (err != ESP_OK) {
        return err;
    }
    return nvs_page_read_item(found, ns, type, key, data, size, NVS_CHUNK_ANY, NVS_VER_ANY);
}

esp_err_t nvs_storage_data_size(nvs_storage_t *st, uint8_t ns, uint8_t type, const char *key,
                                size_t *size) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    nvs_page_t *found = NULL;
    nvs_item_t item;
    esp_err_t err;
    if (type == NVS_ITEM_BLOB) {
        err = nvs_storage_find(st, ns, NVS_ITEM_BLOB_IDX, key, &found, &item, NVS_CHUNK_ANY,
                               NVS_VER_ANY, NULL);
        if (err == ESP_OK) {
            *size = nvs_item_blob_size(&item);
            return ESP_OK;
        }
    }
    err = nvs_storage_find(st, ns, type, key, &found, &item, NVS_CHUNK_ANY, NVS_VER_ANY, NULL);
    if (err == ESP_OK) {
        *size = nvs_item_var_size(&item);
    }
    return err;
}

esp_err_t nvs_storage_find_key(nvs_storage_t *st, uint8_t ns, const char *key, uint8_t *type) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    nvs_page_t *found = NULL;
    nvs_item_t item;
    esp_err_t err = nvs_storage_find(st, ns, NVS_ITEM_ANY, key, &found, &item, NVS_CHUNK_ANY,
                                     NVS_VER_ANY, NULL);
    if (err == ESP_OK && type != NULL) {
        *type = item.type;
    }
    return err;
}

esp_err_t nvs_storage_erase(nvs_storage_t *st, uint8_t ns, const char *key, bool purge) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    nvs_page_t *found = NULL;
    nvs_item_t item;
    size_t index = 0;
    esp_err_t err = nvs_storage_find(st, ns, NVS_ITEM_ANY, key, &found, &item, NVS_CHUNK_ANY,
                                     NVS_VER_ANY, &index);
    if (err != ESP_OK) {
        return err;
    }
    if (item.type == NVS_ITEM_BLOB_IDX) {
        return nvs_blob_erase(st, ns, key, purge, nvs_item_blob_start(&item));
    }
    return nvs_page_erase_entry_and_span(found, index, purge);
}

esp_err_t nvs_storage_erase_namespace(nvs_storage_t *st, uint8_t ns, bool purge) {
    if (!st->active) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    for (uint32_t i = 0; i < st->pm.used_len; i++) {
        nvs_page_t *p = nvs_pagemanager_at(&st->pm, i);
        for (;;) {
            esp_err_t err =
                nvs_page_erase_item(p, ns, NVS_ITEM_ANY, NULL, purge, NVS_CHUNK_ANY, NVS_VER_ANY);
            if (err == ESP_ERR_NVS_NOT_FOUND) {
                break;
            }
            if (err != ESP_OK) {
                return err;
            }
        }
    }
    return ESP_OK;
}
