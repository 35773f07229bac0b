/*
 * nvs_pagemanager.h — ESP-IDF's nvs::PageManager: the pages in use ordered by sequence number
 * (the last one is the active page) and the free pages; page activation, garbage collection
 * with one page always kept free (the fullest-of-erased page is marked FREEING, its live items
 * copied to a newly activated page, then it is erased), and the load-time recovery of a
 * duplicate left by a cut overwrite and of a page left FREEING.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "nvs_page.h"

typedef struct {
    const nvs_io_t *io;
    uint32_t page_count;
    nvs_page_t *pages; /* physical pages, page_count of them */
    uint32_t *used;    /* indexes into pages, by sequence number */
    uint32_t used_len;
    uint32_t *free_pages; /* indexes into pages, taken from the front */
    uint32_t free_len;
    uint32_t seq; /* the next page's sequence number */
} nvs_pagemanager_t;

/* Loads page_count pages; ESP_ERR_NVS_NO_FREE_PAGES when none is left free. */
esp_err_t nvs_pagemanager_load(nvs_pagemanager_t *pm, const nvs_io_t *io, uint32_t page_count);
void nvs_pagemanager_free(nvs_pagemanager_t *pm);
/* The active page (the last page by sequence number). */
nvs_page_t *nvs_pagemanager_back(nvs_pagemanager_t *pm);
/* The used page at position i of the sequence-number order (NULL past the end). */
nvs_page_t *nvs_pagemanager_at(nvs_pagemanager_t *pm, uint32_t i);
/* A fresh active page: a free one when two are free, else after a garbage collection. */
esp_err_t nvs_pagemanager_request_new_page(nvs_pagemanager_t *pm);
