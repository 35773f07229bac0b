/*
 * nvs_page.h — one 4 KiB NVS page (ESP-IDF's nvs::Page): its state, sequence number and entry
 * bitmap in memory, item writes (entry first, then its bitmap bits WRITTEN), erases (bitmap bits
 * ERASED, then optionally the entry purged to zeros), lookups, the copy of a page being freed,
 * and the recovery a load does after a power cut (half-written entries, incomplete strings and
 * blob chunks, a duplicate of the last item on the active page).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "nvs_item.h"

/* The page's list of live item headers (ESP-IDF's HashList, kept exactly instead of hashed). */
typedef struct {
    bool listed;
    uint8_t ns;
    uint8_t chunk;
    char key[NVS_KEY_BYTES];
} nvs_page_key_t;

typedef struct {
    const nvs_io_t *io;
    uint32_t base;  /* byte offset of the page in the partition */
    uint32_t state; /* NVS_PAGE_* */
    uint32_t seq;
    uint8_t version;
    uint16_t used_count;
    uint16_t erased_count;
    size_t first_used; /* NVS_INVALID_ENTRY when none */
    size_t next_free;  /* NVS_INVALID_ENTRY when none */
    uint32_t table[8]; /* entry-state bitmap, 2 bits per entry */
    nvs_page_key_t keys[NVS_ENTRY_COUNT];
} nvs_page_t;

/* Reads page `sector` of the partition; ESP_ERR_NVS_NEW_VERSION_FOUND for a newer format. */
esp_err_t nvs_page_load(nvs_page_t *page, const nvs_io_t *io, uint32_t sector);

esp_err_t nvs_page_write_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                              const void *data, size_t size, uint8_t chunk);
/* Copies a found item's value (var types: size >= its data size) into data. */
esp_err_t nvs_page_read_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                             void *data, size_t size, uint8_t chunk, uint8_t ver);
/* ESP_OK when the stored value equals data, NVS_ERR_CONTENT_DIFFERS otherwise. */
esp_err_t nvs_page_cmp_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                            const void *data, size_t size, uint8_t chunk, uint8_t ver);
esp_err_t nvs_page_erase_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                              bool purge, uint8_t chunk, uint8_t ver);
/* Page::findItem: searches from *index (NVS_NS_ANY / NULL key / NVS_ITEM_ANY match any). */
esp_err_t nvs_page_find_item(nvs_page_t *page, uint8_t ns, uint8_t type, const char *key,
                             size_t *index, nvs_item_t *item, uint8_t chunk, uint8_t ver);
esp_err_t nvs_page_read_var_data(nvs_page_t *page, const nvs_item_t *item, size_t index,
                                 void *data);
esp_err_t nvs_page_erase_entry_and_span(nvs_page_t *page, size_t index, bool purge);
/* Copies every written item to other (initialised first when uninitialised). */
esp_err_t nvs_page_copy_items(nvs_page_t *page, nvs_page_t *other);

esp_err_t nvs_page_mark_full(nvs_page_t *page);
esp_err_t nvs_page_mark_freeing(nvs_page_t *page);
esp_err_t nvs_page_erase(nvs_page_t *page);
/* ESP_ERR_NVS_NOT_INITIALIZED for an uninitialised, corrupt or invalid page. */
esp_err_t nvs_page_seq(const nvs_page_t *page, uint32_t *seq);
esp_err_t nvs_page_set_seq(nvs_page_t *page, uint32_t seq);
/* Bytes a blob chunk written now could hold on this page. */
size_t nvs_page_var_tailroom(const nvs_page_t *page);

/* Building blocks shared by nvs_page.c and nvs_page_load.c. */
unsigned nvs_page_entry_state(const nvs_page_t *page, size_t index);
esp_err_t nvs_page_read_entry(const nvs_page_t *page, size_t index, nvs_item_t *item);
esp_err_t nvs_page_write_entry(nvs_page_t *page, const nvs_item_t *item);
esp_err_t nvs_page_alter_entry_state(nvs_page_t *page, size_t index, unsigned state);
esp_err_t nvs_page_purge_range(nvs_page_t *page, size_t begin, size_t end);
void nvs_page_list_insert(nvs_page_t *page, const nvs_item_t *item, size_t index);
esp_err_t nvs_page_initialize(nvs_page_t *page);
uint32_t nvs_page_header_crc(const uint8_t header[32]);
