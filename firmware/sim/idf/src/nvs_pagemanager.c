/* nvs_pagemanager.c — page order, activation, garbage collection and load-time recovery. */
#include "nvs_pagemanager.h"

#include <stdlib.h>
#include <string.h>

#include "nvs.h"

static void nvs_list_remove(uint32_t *list, uint32_t *len, uint32_t pos) {
    memmove(list + pos, list + pos + 1, (size_t)(*len - pos - 1u) * sizeof(*list));
    (*len)--;
}

static void nvs_list_insert_at(uint32_t *list, uint32_t *len, uint32_t pos, uint32_t value) {
    memmove(list + pos + 1, list + pos, (size_t)(*len - pos) * sizeof(*list));
    list[pos] = value;
    (*len)++;
}

static uint32_t nvs_used_position(const nvs_pagemanager_t *pm, uint32_t page_index) {
    for (uint32_t i = 0; i < pm->used_len; i++) {
        if (pm->used[i] == page_index) {
            return i;
        }
    }
    return UINT32_MAX;
}

nvs_page_t *nvs_pagemanager_back(nvs_pagemanager_t *pm) {
    return pm->used_len == 0 ? NULL : &pm->pages[pm->used[pm->used_len - 1u]];
}

nvs_page_t *nvs_pagemanager_at(nvs_pagemanager_t *pm, uint32_t i) {
    return i < pm->used_len ? &pm->pages[pm->used[i]] : NULL;
}

static esp_err_t nvs_activate_page(nvs_pagemanager_t *pm) {
    if (pm->free_len == 0) {
        return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
    }
    uint32_t index = pm->free_pages[0];
    nvs_page_t *page = &pm->pages[index];
    if (page->state == NVS_PAGE_CORRUPT) {
        esp_err_t err = nvs_page_erase(page);
        if (err != ESP_OK) {
            return err;
        }
    }
    nvs_list_remove(pm->free_pages, &pm->free_len, 0);
    pm->used[pm->used_len++] = index;
    nvs_page_set_seq(page, pm->seq);
    pm->seq++;
    return ESP_OK;
}

/* A cut overwrite leaves the new item last on the active page and the old one on an earlier
 * page: the old one is erased (an old version-1 blob too, for a blob index). */
static void nvs_erase_older_duplicate(nvs_pagemanager_t *pm) {
    nvs_page_t *last = nvs_pagemanager_back(pm);
    nvs_item_t item;
    size_t index = 0;
    bool any = false;
    while (nvs_page_find_item(last, NVS_NS_ANY, NVS_ITEM_ANY, NULL, &index, &item, NVS_CHUNK_ANY,
                              NVS_VER_ANY) == ESP_OK) {
        index += item.span;
        any = true;
    }
    if (!any) {
        return;
    }
    char key[NVS_KEY_BYTES + 1] = {0};
    memcpy(key, item.key, NVS_KEY_BYTES);
    uint32_t i;
    for (i = 0; i + 1u < pm->used_len; i++) {
        nvs_page_t *page = &pm->pages[pm->used[i]];
        if (page->state != NVS_PAGE_FREEING &&
            nvs_page_erase_item(page, item.ns, item.type, key, true, item.chunk, NVS_VER_ANY) ==
                ESP_OK) {
            break;
        }
    }
    if (i + 1u >= pm->used_len && item.type == NVS_ITEM_BLOB_IDX) {
        for (i = 0; i + 1u < pm->used_len; i++) {
            nvs_page_t *page = &pm->pages[pm->used[i]];
            if (page->state != NVS_PAGE_FREEING &&
                nvs_page_erase_item(page, item.ns, NVS_ITEM_BLOB, key, true, item.chunk,
                                    NVS_VER_ANY) == ESP_OK) {
                break;
            }
        }
    }
}

/* A cut garbage collection leaves a page FREEING: its copy is redone onto a fresh page. */
static esp_err_t nvs_finish_freeing(nvs_pagemanager_t *pm) {
    for (uint32_t i = 0; i < pm->used_len; i++) {
        uint32_t freeing = pm->used[i];
        if (pm->pages[freeing].state != NVS_PAGE_FREEING) {
            continue;
        }
        uint32_t newest = pm->used[pm->used_len - 1u];
        if (pm->pages[newest].state == NVS_PAGE_ACTIVE) {
            esp_err_t err = nvs_page_erase(&pm->pages[newest]);
            if (err != ESP_OK) {
                return err;
            }
            pm->used_len--;
            pm->free_pages[pm->free_len++] = newest;
        }
        esp_err_t err = nvs_activate_page(pm);
        if (err != ESP_OK) {
            return err;
        }
        err = nvs_page_copy_items(&pm->pages[freeing], nvs_pagemanager_back(pm));
        if (err != ESP_OK && err != ESP_ERR_NVS_NOT_FOUND) {
            return err;
        }
        err = nvs_page_erase(&pm->pages[freeing]);
        if (err != ESP_OK) {
            return err;
        }
        nvs_list_remove(pm->used, &pm->used_len, nvs_used_position(pm, freeing));
        pm->free_pages[pm->free_len++] = freeing;
        break;
    }
    return ESP_OK;
}

esp_err_t nvs_pagemanager_load(nvs_pagemanager_t *pm, const nvs_io_t *io, uint32_t page_count) {
    memset(pm, 0, sizeof(*pm));
    pm->io = io;
    pm->page_count = page_count;
    pm->pages = calloc(page_count, sizeof(*pm->pages));
    pm->used = calloc(page_count, sizeof(*pm->used));
    pm->free_pages = calloc(page_count, sizeof(*pm->free_pages));
    if (pm->pages == NULL || pm->used == NULL || pm->free_pages == NULL) {
        return ESP_ERR_NO_MEM;
    }
    for (uint32_t i = 0; i < page_count; i++) {
        esp_err_t err = nvs_page_load(&pm->pages[i], io, i);
        if (err != ESP_OK) {
            return err;
        }
        uint32_t seq;
        if (nvs_page_seq(&pm->pages[i], &seq) != ESP_OK) {
            pm->free_pages[pm->free_len++] = i;
            continue;
        }
        uint32_t pos = pm->used_len;
        for (uint32_t j = 0; j < pm->used_len; j++) {
            uint32_t other;
            if (nvs_page_seq(&pm->pages[pm->used[j]], &other) == ESP_OK && other > seq) {
                pos = j;
                break;
            }
        }
        nvs_list_insert_at(pm->used, &pm->used_len, pos, i);
    }
    if (pm->used_len == 0) {
        pm->seq = 0;
        return nvs_activate_page(pm);
    }
    uint32_t last_seq = 0;
    esp_err_t err = nvs_page_seq(nvs_pagemanager_back(pm), &last_seq);
    if (err != ESP_OK) {
        return err;
    }
    pm->seq = last_seq + 1u;
    nvs_erase_older_duplicate(pm);
    err = nvs_finish_freeing(pm);
    if (err != ESP_OK) {
        return err;
    }
    return pm->free_len == 0 ? ESP_ERR_NVS_NO_FREE_PAGES : ESP_OK;
}

void nvs_pagemanager_free(nvs_pagemanager_t *pm) {
    free(pm->pages);
    free(pm->used);
    free(pm->free_pages);
    memset(pm, 0, sizeof(*pm));
}

esp_err_t nvs_pagemanager_request_new_page(nvs_pagemanager_t *pm) {
    if (pm->free_len == 0) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    if (pm->free_len >= 2u) {
        return nvs_activate_page(pm);
    }
    /* The page with the most entries not in use (erased or never written) is freed. */
    uint32_t victim_pos = 0;
    size_t most_unused = 0;
    for (uint32_t i = 0; i < pm->used_len; i++) {
        size_t unused = NVS_ENTRY_COUNT - pm->pages[pm->used[i]].used_count;
        if (unused > most_unused) {
            victim_pos = i;
            most_unused = unused;
        }
    }
    if (most_unused == 0) {
        return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
    }
    uint32_t victim = pm->used[victim_pos];
    esp_err_t err = nvs_page_mark_freeing(&pm->pages[victim]);
    if (err != ESP_OK) {
        return err;
    }
    err = nvs_activate_page(pm);
    if (err != ESP_OK) {
        return err;
    }
    err = nvs_page_copy_items(&pm->pages[victim], nvs_pagemanager_back(pm));
    if (err != ESP_OK && err != ESP_ERR_NVS_NOT_FOUND) {
        return err;
    }
    err = nvs_page_erase(&pm->pages[victim]);
    if (err != ESP_OK) {
        return err;
    }
    nvs_list_remove(pm->used, &pm->used_len, nvs_used_position(pm, victim));
    pm->free_pages[pm->free_len++] = victim;
    return ESP_OK;
}
