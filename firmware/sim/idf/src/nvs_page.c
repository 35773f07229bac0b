/* nvs_page.c — one NVS page: item writes and erases, lookups, copying and load-time recovery. */
#include "nvs_page.h"

#include <string.h>

#include "nvs.h"
#include "nvs_crypt.h"

#define NVS_PAGE_HEADER_CRC_OFFSET 28u

unsigned nvs_page_entry_state(const nvs_page_t *page, size_t index) {
    return (page->table[index / 16u] >> ((index % 16u) * 2u)) & 3u;
}

static void nvs_table_set(nvs_page_t *page, size_t index, unsigned state) {
    uint32_t shift = (uint32_t)((index % 16u) * 2u);
    page->table[index / 16u] = (page->table[index / 16u] & ~(3u << shift)) | (state << shift);
}

static uint32_t nvs_entry_address(const nvs_page_t *page, size_t index) {
    return page->base + NVS_ENTRY_DATA_OFFSET + (uint32_t)index * NVS_ENTRY_BYTES;
}

esp_err_t nvs_page_read_entry(const nvs_page_t *page, size_t index, nvs_item_t *item) {
    uint32_t address = nvs_entry_address(page, index);
    esp_err_t err = page->io->read(page->io->ctx, address, item, sizeof(*item));
    if (err == ESP_OK && page->io->crypt != NULL) {
        err = nvs_crypt_decrypt(page->io->crypt, address, (uint8_t *)item, sizeof(*item));
    }
    return err;
}

/* Writes whole entries from `index` on: encrypted first when the partition is (nvs_crypt.h). */
static esp_err_t nvs_page_write_entries(nvs_page_t *page, size_t index, const void *data,
                                        size_t size) {
    uint32_t address = nvs_entry_address(page, index);
    if (page->io->crypt == NULL) {
        return page->io->write(page->io->ctx, address, data, size);
    }
    static _Thread_local uint8_t buf[NVS_PAGE_BYTES];
    if (size > sizeof(buf)) {
        return ESP_ERR_INVALID_SIZE;
    }
    memcpy(buf, data, size);
    esp_err_t err = nvs_crypt_encrypt(page->io->crypt, address, buf, size);
    return err != ESP_OK ? err : page->io->write(page->io->ctx, address, buf, size);
}

void nvs_page_list_insert(nvs_page_t *page, const nvs_item_t *item, size_t index) {
    nvs_page_key_t *k = &page->keys[index];
    k->listed = true;
    k->ns = item->ns;
    k->chunk = item->chunk;
    memcpy(k->key, item->key, sizeof(k->key));
}

/* The first listed item at or after start with this namespace, key and chunk index. */
static size_t nvs_list_find(const nvs_page_t *page, size_t start, uint8_t ns, const char *key,
                            uint8_t chunk) {
    for (size_t i = start; i < NVS_ENTRY_COUNT; i++) {
        const nvs_page_key_t *k = &page->keys[i];
        if (k->listed && k->ns == ns && k->chunk == chunk &&
            strncmp(k->key, key, NVS_KEY_BYTES) == 0) {
            return i;
        }
    }
    return NVS_INVALID_ENTRY;
}

uint32_t nvs_page_header_crc(const uint8_t header[32]) {
    return nvs_crc32(0xFFFFFFFFu, header + 4, NVS_PAGE_HEADER_CRC_OFFSET - 4u);
}

esp_err_t nvs_page_alter_entry_state(nvs_page_t *page, size_t index, unsigned state) {
    nvs_table_set(page, index, state);
    size_t word = index / 16u;
    esp_err_t err =
        page->io->write(page->io->ctx, page->base + NVS_ENTRY_TABLE_OFFSET + (uint32_t)word * 4u,
                        &page->table[word], 4);
    if (err != ESP_OK) {
        page->state = NVS_PAGE_INVALID;
    }
    return err;
}

/* Sets [begin, end) to state, writing each changed bitmap word once, from the last down. */
static esp_err_t nvs_alter_entry_range_state(nvs_page_t *page, size_t begin, size_t end,
                                             unsigned state) {
    size_t word = (end - 1u) / 16u;
    for (size_t i = end; i-- > begin;) {
        nvs_table_set(page, i, state);
        size_t next_word = i == begin ? SIZE_MAX : (i - 1u) / 16u;
        if (next_word != word) {
            esp_err_t err = page->io->write(
                page->io->ctx, page->base + NVS_ENTRY_TABLE_OFFSET + (uint32_t)word * 4u,
                &page->table[word], 4);
            if (err != ESP_OK) {
                return err;
            }
        }
        word = next_word;
    }
    return ESP_OK;
}

esp_err_t nvs_page_purge_range(nvs_page_t *page, size_t begin, size_t end) {
    static const uint8_t zeros[NVS_ENTRY_BYTES];
    for (size_t i = begin; i < end; i++) {
        esp_err_t err =
            page->io->write(page->io->ctx, nvs_entry_address(page, i), zeros, sizeof(zeros));
        if (err != ESP_OK) {
            page->state = NVS_PAGE_INVALID;
            return err;
        }
    }
    return ESP_OK;
}

esp_err_t nvs_page_initialize(nvs_page_t *page) {
    uint8_t header[32];
    memset(header, 0xFF, sizeof(header));
    uint32_t state = NVS_PAGE_ACTIVE;
    memcpy(header, &state, 4);
    memcpy(header + 4, &page->seq, 4);
    header[8] = page->version;
    uint32_t crc = nvs_page_header_crc(header);
    memcpy(header + NVS_PAGE_HEADER_CRC_OFFSET, &crc, 4);
    esp_err_t err = page->io->write(page->io->ctx, page->base, header, sizeof(header));
    if (err != ESP_OK) {
        page->state = NVS_PAGE_INVALID;
        return err;
    }
    page->state = NVS_PAGE_ACTIVE;
    page->next_free = 0;
    memset(page->table, 0xFF, sizeof(page->table));
    return ESP_OK;
}

esp_err_t nvs_page_write_entry(nvs_page_t *page, const nvs_item_t *item) {
    if (page->next_free >= NVS_ENTRY_COUNT) {
        return ESP_FAIL;
    }
    esp_err_t err = nvs_page_write_entries(page, page->next_free, item, 32);
    if (err != ESP_OK) {
        page->state = NVS_PAGE_INVALID;
        return err;
    }
    err = nvs_page_alter_entry_state(page, page->next_free, NVS_ENTRY_WRITTEN);
    if (err != ESP_OK) {
        return err;
    }
    if (page->first_used == NVS_INVALID_ENTRY) {
        page->first_used = page->next_free;
    }
    page->used_count++;
    page->next_free++;
    return ESP_OK;
}

static esp_err_t nvs_write_entry_data(nvs_page_t *page, const uint8_t *data, size_t size) {
    size_t count = size / NVS_ENTRY_BYTES;
    esp_err_t err = nvs_page_write_entries(page, page->next_free, data, size);
    if (err != ESP_OK) {
        page->state = NVS_PAGE_INVALID;
        return err;
    }
    err = nvs_alter_entry_range_state(page, page->next_free, page->next_free + count,
                                      NVS_ENTRY_WRITTEN);
    if (err != ESP_OK) {
        return err;
    }
    page->used_count = (uint16_t)(page->used_count + count);
    page->next_free += count;
    return ESP_OK;
}

esp_err_t nvs_page_write_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                              const void *data, size_t size, uint8_t chunk) {
    if (page->state == NVS_PAGE_INVALID) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    if (page->state == NVS_PAGE_UNINITIALIZED) {
        esp_err_t err = nvs_page_initialize(page);
        if (err != ESP_OK) {
            return err;
        }
    }
    if (page->state == NVS_PAGE_FULL) {
        return ESP_ERR_NVS_PAGE_FULL;
    }
    if (strlen(key) > NVS_KEY_MAX_CHARS) {
        return ESP_ERR_NVS_KEY_TOO_LONG;
    }
    if (size > NVS_CHUNK_MAX_BYTES) {
        return ESP_ERR_NVS_VALUE_TOO_LONG;
    }
    bool var = nvs_type_is_var(type);
    if (!var && size > 8) {
        return ESP_ERR_INVALID_ARG;
    }
    size_t rounded = var ? (size + NVS_ENTRY_BYTES - 1u) & ~(size_t)(NVS_ENTRY_BYTES - 1u) : 0;
    size_t entries = 1u + rounded / NVS_ENTRY_BYTES;
    if (page->next_free == NVS_INVALID_ENTRY || page->next_free + entries > NVS_ENTRY_COUNT) {
        return ESP_ERR_NVS_PAGE_FULL;
    }
    nvs_item_t item;
    nvs_item_init(&item, ns, type, (uint8_t)entries, key, chunk);
    nvs_page_list_insert(page, &item, page->next_free);
    if (!var) {
        memcpy(item.data, data, size);
        item.crc32 = nvs_item_crc(&item);
        return nvs_page_write_entry(page, &item);
    }
    uint16_t size16 = (uint16_t)size;
    uint32_t data_crc = nvs_crc32(0xFFFFFFFFu, data, size);
    memcpy(item.data, &size16, 2);
    memset(item.data + 2, 0xFF, 2);
    memcpy(item.data + 4, &data_crc, 4);
    item.crc32 = nvs_item_crc(&item);
    esp_err_t err = nvs_page_write_entry(page, &item);
    size_t tail = size % NVS_ENTRY_BYTES;
    size_t whole = size - tail;
    if (err == ESP_OK && whole > 0) {
        err = nvs_write_entry_data(page, data, whole);
    }
    if (err == ESP_OK && tail > 0) {
        uint8_t raw[NVS_ENTRY_BYTES];
        memset(raw, 0xFF, sizeof(raw));
        memcpy(raw, (const uint8_t *)data + whole, tail);
        err = nvs_page_write_entry(page, (const nvs_item_t *)(const void *)raw);
    }
    return err;
}

esp_err_t nvs_page_read_var_data(nvs_page_t *page, const nvs_item_t *item, size_t index,
                                 void *data) {
    if (page->state == NVS_PAGE_INVALID) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    uint8_t *dst = data;
    size_t left = nvs_item_var_size(item);
    for (size_t i = index + 1u; i < index + item->span; i++) {
        nvs_item_t raw;
        esp_err_t err = nvs_page_read_entry(page, i, &raw);
        if (err != ESP_OK) {
            return err;
        }
        size_t n = left < NVS_ENTRY_BYTES ? left : NVS_ENTRY_BYTES;
        memcpy(dst, &raw, n);
        left -= n;
        dst += n;
    }
    if (nvs_crc32(0xFFFFFFFFu, data, nvs_item_var_size(item)) != nvs_item_var_crc(item)) {
        esp_err_t err = nvs_page_erase_entry_and_span(page, index, true);
        return err != ESP_OK ? err : ESP_ERR_NVS_NOT_FOUND;
    }
    return ESP_OK;
}

static size_t nvs_type_size(uint8_t type) {
    return type == NVS_ITEM_SZ || type == NVS_ITEM_BLOB || type == NVS_ITEM_BLOB_DATA ||
                   type == NVS_ITEM_BLOB_IDX || type == NVS_ITEM_ANY
               ? 0
               : (size_t)(type & 0x0Fu);
}

esp_err_t nvs_page_read_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                             void *data, size_t size, uint8_t chunk, uint8_t ver) {
    if (page->state == NVS_PAGE_INVALID) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    size_t index = 0;
    nvs_item_t item;
    esp_err_t err = nvs_page_find_item(page, ns, type, key, &index, &item, chunk, ver);
    if (err != ESP_OK) {
        return err;
    }
    if (!nvs_type_is_var(type)) {
        if (size != nvs_type_size(type)) {
            return ESP_ERR_NVS_TYPE_MISMATCH;
        }
        memcpy(data, item.data, size);
        return ESP_OK;
    }
    if (size < nvs_item_var_size(&item)) {
        return ESP_ERR_NVS_INVALID_LENGTH;
    }
    return nvs_page_read_var_data(page, &item, index, data);
}

esp_err_t nvs_page_cmp_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                            const void *data, size_t size, uint8_t chunk, uint8_t ver) {
    if (page->state == NVS_PAGE_INVALID) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    size_t index = 0;
    nvs_item_t item;
    esp_err_t err = nvs_page_find_item(page, ns, type, key, &index, &item, chunk, ver);
    if (err != ESP_OK) {
        return err;
    }
    if (!nvs_type_is_var(type)) {
        if (size != nvs_type_size(type)) {
            return ESP_ERR_NVS_TYPE_MISMATCH;
        }
        return memcmp(data, item.data, size) == 0 ? ESP_OK : NVS_ERR_CONTENT_DIFFERS;
    }
    size_t stored = nvs_item_var_size(&item);
    if (size < stored) {
        return ESP_ERR_NVS_INVALID_LENGTH;
    }
    if (nvs_crc32(0xFFFFFFFFu, data, stored) != nvs_item_var_crc(&item)) {
        return NVS_ERR_CONTENT_DIFFERS;
    }
    const uint8_t *src = data;
    size_t left = stored;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = index + 1u; i < index + item.span; i++) {
        nvs_item_t raw;
        err = nvs_page_read_entry(page, i, &raw);
        if (err != ESP_OK) {
            return err;
        }
        size_t n = left < NVS_ENTRY_BYTES ? left : NVS_ENTRY_BYTES;
        if (memcmp(src, &raw, n) != 0) {
            return NVS_ERR_CONTENT_DIFFERS;
        }
        crc = nvs_crc32(crc, &raw, n);
        left -= n;
        src += n;
    }
    return crc == nvs_item_var_crc(&item) ? ESP_OK : NVS_ERR_CONTENT_DIFFERS;
}

esp_err_t nvs_page_erase_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                              bool purge, uint8_t chunk, uint8_t ver) {
    size_t index = 0;
    nvs_item_t item;
    esp_err_t err = nvs_page_find_item(page, ns, type, key, &index, &item, chunk, ver);
    return err != ESP_OK ? err : nvs_page_erase_entry_and_span(page, index, purge);
}

static void nvs_update_first_used(nvs_page_t *page, size_t index, size_t span) {
    page->first_used = NVS_INVALID_ENTRY;
    size_t end = page->next_free > NVS_ENTRY_COUNT ? NVS_ENTRY_COUNT : page->next_free;
    for (size_t i = index + span; i < end; i++) {
        if (nvs_page_entry_state(page, i) == NVS_ENTRY_WRITTEN) {
            page->first_used = i;
            break;
        }
    }
}

esp_err_t nvs_page_erase_entry_and_span(nvs_page_t *page, size_t index, bool purge) {
    size_t span = 1;
    esp_err_t err;
    if (nvs_page_entry_state(page, index) == NVS_ENTRY_WRITTEN) {
        nvs_item_t item;
        err = nvs_page_read_entry(page, index, &item);
        if (err != ESP_OK) {
            return err;
        }
        page->keys[index].listed = false;
        if (!nvs_item_consistent(&item, index)) {
            err = nvs_page_alter_entry_state(page, index, NVS_ENTRY_ERASED);
            page->used_count--;
            page->erased_count++;
        } else {
            span = item.span;
            for (size_t i = index + span; i-- > index;) {
                if (nvs_page_entry_state(page, i) == NVS_ENTRY_WRITTEN) {
                    page->used_count--;
                }
                page->erased_count++;
            }
            err = span == 1
                      ? nvs_page_alter_entry_state(page, index, NVS_ENTRY_ERASED)
                      : nvs_alter_entry_range_state(page, index, index + span, NVS_ENTRY_ERASED);
        }
    } else {
        err = nvs_page_alter_entry_state(page, index, NVS_ENTRY_ERASED);
    }
    if (err == ESP_OK && purge) {
        err = nvs_page_purge_range(page, index, index + span);
    }
    if (err != ESP_OK) {
        return err;
    }
    if (index == page->first_used) {
        nvs_update_first_used(page, index, span);
    }
    if (index + span > page->next_free) { /* never for a loaded FULL page (NVS_INVALID_ENTRY) */
        page->next_free = index + span;
    }
    return ESP_OK;
}

/* The rules of Page::findItem for one written, consistent item: 1 match, 0 skip, -1 mismatch. */
static int nvs_item_matches(const nvs_item_t *item, uint8_t ns, uint8_t type, const char *key,
                            uint8_t chunk, uint8_t ver) {
    if (ns != NVS_NS_ANY && item->ns != ns) {
        return 0;
    }
    if (key != NULL && !nvs_item_key_is(item, key)) {
        return 0;
    }
    if (chunk != NVS_CHUNK_ANY && type == NVS_ITEM_BLOB_DATA && item->chunk != chunk) {
        return 0;
    }
    if (chunk == NVS_CHUNK_ANY && type == NVS_ITEM_BLOB_DATA && item->type != NVS_ITEM_BLOB_DATA) {
        return 0;
    }
    if (chunk == NVS_CHUNK_ANY && type == NVS_ITEM_BLOB && item->type == NVS_ITEM_BLOB_IDX) {
        return -1;
    }
    if (chunk == NVS_CHUNK_ANY && type == NVS_ITEM_BLOB && item->type == NVS_ITEM_BLOB_DATA) {
        return 0;
    }
    if (type == NVS_ITEM_BLOB_IDX && item->chunk != NVS_CHUNK_ANY) {
        return 0;
    }
    if (type == NVS_ITEM_BLOB_IDX && ver != NVS_VER_ANY && nvs_item_blob_start(item) != ver) {
        return 0;
    }
    if (type != NVS_ITEM_ANY && item->type != type) {
        if (key == NULL && ns == NVS_NS_ANY && chunk == NVS_CHUNK_ANY) {
            return 0;
        }
        return -1;
    }
    return 1;
}

esp_err_t nvs_page_find_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                             size_t *index, nvs_item_t *item, uint8_t chunk, uint8_t ver) {
    if (page->state == NVS_PAGE_CORRUPT || page->state == NVS_PAGE_INVALID ||
        page->state == NVS_PAGE_UNINITIALIZED) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    if (*index >= NVS_ENTRY_COUNT) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    size_t start = page->first_used;
    if (*index > page->first_used && *index < NVS_ENTRY_COUNT) {
        start = *index;
    }
    size_t end = page->next_free > NVS_ENTRY_COUNT ? NVS_ENTRY_COUNT : page->next_free;
    if (ns != NVS_NS_ANY && key != NULL && (type != NVS_ITEM_BLOB_DATA || chunk != NVS_CHUNK_ANY)) {
        char padded[NVS_KEY_BYTES] = {0};
        strncpy(padded, key, NVS_KEY_MAX_CHARS);
        size_t cached = start < NVS_ENTRY_COUNT ? nvs_list_find(page, start, ns, padded, chunk)
                                                : NVS_INVALID_ENTRY;
        if (cached == NVS_INVALID_ENTRY) {
            return ESP_ERR_NVS_NOT_FOUND;
        }
        start = cached;
    }
    size_t next;
    for (size_t i = start; i < end; i = next) {
        next = i + 1u;
        if (nvs_page_entry_state(page, i) != NVS_ENTRY_WRITTEN) {
            continue;
        }
        esp_err_t err = nvs_page_read_entry(page, i, item);
        if (err != ESP_OK) {
            page->state = NVS_PAGE_INVALID;
            return err;
        }
        if (!nvs_item_consistent(item, i)) {
            err = nvs_page_erase_entry_and_span(page, i, true);
            if (err != ESP_OK) {
                page->state = NVS_PAGE_INVALID;
                return err;
            }
            continue;
        }
        if (nvs_type_is_var(item->type)) {
            next = i + item->span;
        }
        int match = nvs_item_matches(item, ns, type, key, chunk, ver);
        if (match == 0) {
            continue;
        }
        if (match < 0 &&
            !(chunk == NVS_CHUNK_ANY && type == NVS_ITEM_BLOB && item->type == NVS_ITEM_BLOB_IDX)) {
            *index = i;
        }
        if (match < 0) {
            return ESP_ERR_NVS_TYPE_MISMATCH;
        }
        *index = i;
        return ESP_OK;
    }
    return ESP_ERR_NVS_NOT_FOUND;
}

esp_err_t nvs_page_copy_items(nvs_page_t *page, nvs_page_t *other) {
    if (page->first_used == NVS_INVALID_ENTRY) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    if (other->state == NVS_PAGE_UNINITIALIZED) {
        esp_err_t err = nvs_page_initialize(other);
        if (err != ESP_OK) {
            return err;
        }
    }
    size_t i = page->first_used;
    while (i < NVS_ENTRY_COUNT) {
        if (nvs_page_entry_state(page, i) != NVS_ENTRY_WRITTEN) {
            if (i == page->first_used) {
                return ESP_FAIL;
            }
            i++;
            continue;
        }
        nvs_item_t entry;
        esp_err_t err = nvs_page_read_entry(page, i, &entry);
        if (err != ESP_OK) {
            return err;
        }
        if (other->next_free < NVS_ENTRY_COUNT) {
            nvs_page_list_insert(other, &entry, other->next_free);
        }
        err = nvs_page_write_entry(other, &entry);
        if (err != ESP_OK) {
            return err;
        }
        size_t end = i + entry.span;
        if (end > NVS_ENTRY_COUNT) {
            return ESP_FAIL;
        }
        for (size_t j = i + 1u; j < end; j++) {
            err = nvs_page_read_entry(page, j, &entry);
            if (err == ESP_OK) {
                err = nvs_page_write_entry(other, &entry);
            }
            if (err != ESP_OK) {
                return err;
            }
        }
        i = end;
    }
    return ESP_OK;
}

static esp_err_t nvs_alter_page_state(nvs_page_t *page, uint32_t state) {
    esp_err_t err = page->io->write(page->io->ctx, page->base, &state, sizeof(state));
    page->state = err == ESP_OK ? state : NVS_PAGE_INVALID;
    return err;
}

esp_err_t nvs_page_mark_full(nvs_page_t *page) {
    if (page->state != NVS_PAGE_ACTIVE) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    return nvs_alter_page_state(page, NVS_PAGE_FULL);
}

esp_err_t nvs_page_mark_freeing(nvs_page_t *page) {
    if (page->state != NVS_PAGE_FULL && page->state != NVS_PAGE_ACTIVE) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    return nvs_alter_page_state(page, NVS_PAGE_FREEING);
}

esp_err_t nvs_page_erase(nvs_page_t *page) {
    esp_err_t err = page->io->erase(page->io->ctx, page->base, NVS_PAGE_BYTES);
    if (err != ESP_OK) {
        page->state = NVS_PAGE_INVALID;
        return err;
    }
    page->used_count = 0;
    page->erased_count = 0;
    page->first_used = NVS_INVALID_ENTRY;
    page->next_free = NVS_INVALID_ENTRY;
    page->state = NVS_PAGE_UNINITIALIZED;
    memset(page->keys, 0, sizeof(page->keys));
    return ESP_OK;
}

esp_err_t nvs_page_seq(const nvs_page_t *page, uint32_t *seq) {
    if (page->state == NVS_PAGE_UNINITIALIZED || page->state == NVS_PAGE_INVALID ||
        page->state == NVS_PAGE_CORRUPT) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    *seq = page->seq;
    return ESP_OK;
}

esp_err_t nvs_page_set_seq(nvs_page_t *page, uint32_t seq) {
    if (page->state != NVS_PAGE_UNINITIALIZED) {
        return ESP_ERR_NVS_INVALID_STATE;
    }
    page->seq = seq;
    return ESP_OK;
}

size_t nvs_page_var_tailroom(const nvs_page_t *page) {
    if (page->state == NVS_PAGE_UNINITIALIZED) {
        return NVS_CHUNK_MAX_BYTES;
    }
    if (page->state == NVS_PAGE_FULL) {
        return 0;
    }
    /* One entry is kept for the chunk's own header. */
    return page->next_free < NVS_ENTRY_COUNT - 1u
               ? (NVS_ENTRY_COUNT - page->next_free - 1u) * NVS_ENTRY_BYTES
               : 0;
}
