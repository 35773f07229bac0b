/*
 * nvs_page_load.c — Page::load and its entry-table recovery: what a page looks like after any
 * power cut is repaired here as ESP-IDF repairs it (an entry written but still EMPTY in the
 * bitmap is marked ERASED, a string or blob chunk whose span is not fully WRITTEN is erased,
 * and of two items with the same namespace, key and chunk index on the active page the older
 * is erased).
 */
#include <string.h>

#include "nvs.h"
#include "nvs_page.h"

static bool nvs_page_all_erased(const nvs_page_t *page, esp_err_t *err) {
    uint32_t block[128];
    for (uint32_t off = 0; off < NVS_PAGE_BYTES; off += sizeof(block)) {
        *err = page->io->read(page->io->ctx, page->base + off, block, sizeof(block));
        if (*err != ESP_OK) {
            return false;
        }
        for (size_t i = 0; i < 128u; i++) {
            if (block[i] != 0xFFFFFFFFu) {
                return false;
            }
        }
    }
    return true;
}

/* Entries after the bitmap's first EMPTY one that were (half) written: a cut before the bitmap. */
static esp_err_t nvs_skip_half_written(nvs_page_t *page) {
    while (page->next_free < NVS_ENTRY_COUNT) {
        uint32_t word;
        esp_err_t err = page->io->read(page->io->ctx,
                                       page->base + NVS_ENTRY_DATA_OFFSET +
                                           (uint32_t)page->next_free * NVS_ENTRY_BYTES,
                                       &word, sizeof(word));
        if (err != ESP_OK) {
            page->state = NVS_PAGE_INVALID;
            return err;
        }
        if (word == 0xFFFFFFFFu) {
            break;
        }
        unsigned old = nvs_page_entry_state(page, page->next_free);
        err = nvs_page_alter_entry_state(page, page->next_free, NVS_ENTRY_ERASED);
        if (err == ESP_OK) {
            err = nvs_page_purge_range(page, page->next_free, page->next_free + 1u);
        }
        if (err != ESP_OK) {
            page->state = NVS_PAGE_INVALID;
            return err;
        }
        page->next_free++;
        if (old == NVS_ENTRY_WRITTEN) {
            page->used_count--;
        }
        page->erased_count++;
    }
    return ESP_OK;
}

static size_t nvs_list_duplicate(const nvs_page_t *page, const nvs_item_t *item) {
    for (size_t i = 0; i < NVS_ENTRY_COUNT; i++) {
        const nvs_page_key_t *k = &page->keys[i];
        if (k->listed && k->ns == item->ns && k->chunk == item->chunk &&
            memcmp(k->key, item->key, NVS_KEY_BYTES) == 0) {
            return i;
        }
    }
    return NVS_INVALID_ENTRY;
}

static esp_err_t nvs_load_active(nvs_page_t *page) {
    for (size_t i = 0; i < NVS_ENTRY_COUNT; i++) {
        if (nvs_page_entry_state(page, i) == NVS_ENTRY_EMPTY) {
            page->next_free = i;
            break;
        }
    }
    esp_err_t err = nvs_skip_half_written(page);
    if (err != ESP_OK) {
        return err;
    }
    nvs_item_t item;
    memset(&item, 0xFF, sizeof(item));
    size_t last_index = NVS_INVALID_ENTRY;
    size_t end = page->next_free > NVS_ENTRY_COUNT ? NVS_ENTRY_COUNT : page->next_free;
    size_t span;
    for (size_t i = 0; i < end; i += span) {
        span = 1;
        unsigned state = nvs_page_entry_state(page, i);
        if (state == NVS_ENTRY_ERASED) {
            last_index = NVS_INVALID_ENTRY;
            continue;
        }
        if (state == NVS_ENTRY_ILLEGAL) {
            last_index = NVS_INVALID_ENTRY;
            err = nvs_page_erase_entry_and_span(page, i, true);
            if (err != ESP_OK) {
                page->state = NVS_PAGE_INVALID;
                return err;
            }
            continue;
        }
        last_index = i;
        err = nvs_page_read_entry(page, i, &item);
        if (err != ESP_OK) {
            page->state = NVS_PAGE_INVALID;
            return err;
        }
        if (!nvs_item_consistent(&item, i)) {
            err = nvs_page_erase_entry_and_span(page, i, true);
            if (err != ESP_OK) {
                page->state = NVS_PAGE_INVALID;
                return err;
            }
            continue;
        }
        nvs_page_list_insert(page, &item, i);
        size_t duplicate = nvs_list_duplicate(page, &item);
        if (nvs_type_is_var(item.type)) {
            span = item.span;
            bool incomplete = false;
            for (size_t j = i; j < i + span; j++) {
                if (nvs_page_entry_state(page, j) != NVS_ENTRY_WRITTEN) {
                    incomplete = true;
                    last_index = NVS_INVALID_ENTRY;
                    break;
                }
            }
            if (incomplete) {
                nvs_page_erase_entry_and_span(page, i, true);
                continue;
            }
        }
        if (duplicate < i) {
            nvs_page_erase_entry_and_span(page, duplicate, true);
        }
    }
    if (last_index != NVS_INVALID_ENTRY) {
        size_t found = 0;
        nvs_item_t dup;
        if (nvs_page_find_item(page, item.ns, item.type, item.key, &found, &dup, NVS_CHUNK_ANY,
                               NVS_VER_ANY) == ESP_OK &&
            found < last_index) {
            err = nvs_page_erase_entry_and_span(page, found, true);
            if (err != ESP_OK) {
                page->state = NVS_PAGE_INVALID;
                return err;
            }
        }
    }
    return ESP_OK;
}

static esp_err_t nvs_load_full(nvs_page_t *page) {
    for (size_t i = page->first_used; i < NVS_ENTRY_COUNT; i++) {
        if (nvs_page_entry_state(page, i) != NVS_ENTRY_WRITTEN) {
            continue;
        }
        nvs_item_t item;
        esp_err_t err = nvs_page_read_entry(page, i, &item);
        if (err != ESP_OK) {
            page->state = NVS_PAGE_INVALID;
            return err;
        }
        if (!nvs_item_consistent(&item, i)) {
            err = nvs_page_erase_entry_and_span(page, i, true);
            if (err != ESP_OK) {
                page->state = NVS_PAGE_INVALID;
                return err;
            }
            continue;
        }
        nvs_page_list_insert(page, &item, i);
        if (nvs_type_is_var(item.type)) {
            for (size_t j = i + 1u; j < i + item.span; j++) {
                if (nvs_page_entry_state(page, j) != NVS_ENTRY_WRITTEN) {
                    nvs_page_erase_entry_and_span(page, i, true);
                    break;
                }
            }
        }
        i += item.span - 1u;
    }
    return ESP_OK;
}

static esp_err_t nvs_load_entry_table(nvs_page_t *page) {
    esp_err_t err = page->io->read(page->io->ctx, page->base + NVS_ENTRY_TABLE_OFFSET, page->table,
                                   sizeof(page->table));
    if (err != ESP_OK) {
        page->state = NVS_PAGE_INVALID;
        return err;
    }
    page->erased_count = 0;
    page->used_count = 0;
    for (size_t i = 0; i < NVS_ENTRY_COUNT; i++) {
        unsigned state = nvs_page_entry_state(page, i);
        if (state == NVS_ENTRY_WRITTEN) {
            if (page->first_used == NVS_INVALID_ENTRY) {
                page->first_used = i;
            }
            page->used_count++;
        } else if (state == NVS_ENTRY_ERASED) {
            page->erased_count++;
        }
    }
    return page->state == NVS_PAGE_ACTIVE ? nvs_load_active(page) : nvs_load_full(page);
}

esp_err_t nvs_page_load(nvs_page_t *page, const nvs_io_t *io, uint32_t sector) {
    memset(page, 0, sizeof(*page));
    page->io = io;
    page->base = sector * NVS_PAGE_BYTES;
    page->state = NVS_PAGE_INVALID;
    page->version = NVS_FORMAT_VERSION;
    page->first_used = NVS_INVALID_ENTRY;
    page->next_free = NVS_INVALID_ENTRY;
    uint8_t header[32];
    esp_err_t err = io->read(io->ctx, page->base, header, sizeof(header));
    if (err != ESP_OK) {
        return err;
    }
    uint32_t state, crc;
    memcpy(&state, header, 4);
    memcpy(&crc, header + 28, 4);
    if (state == NVS_PAGE_UNINITIALIZED) {
        page->state = NVS_PAGE_UNINITIALIZED;
        if (!nvs_page_all_erased(page, &err)) {
            if (err != ESP_OK) {
                page->state = NVS_PAGE_INVALID;
                return err;
            }
            page->state = NVS_PAGE_CORRUPT; /* not as empty as its header says */
        }
    } else if (crc == nvs_page_header_crc(header)) {
        page->state = state;
        memcpy(&page->seq, header + 4, 4);
        if (header[8] < NVS_FORMAT_VERSION) {
            return ESP_ERR_NVS_NEW_VERSION_FOUND;
        }
        page->version = header[8];
    }
    switch (page->state) {
    case NVS_PAGE_UNINITIALIZED:
        break;
    case NVS_PAGE_FULL:
    case NVS_PAGE_ACTIVE:
    case NVS_PAGE_FREEING:
        return nvs_load_entry_table(page);
    default:
        page->state = NVS_PAGE_CORRUPT;
        break;
    }
    return ESP_OK;
}
