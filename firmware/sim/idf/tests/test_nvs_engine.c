/* test_nvs_engine.c — the NVS storage engine on the flash model: typed values, strings and
 * multi-page blobs, overwrites, erases, garbage collection over many writes, a full partition,
 * the provisioning image of ESP-IDF's generator, and load-time repair of crafted cut states. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nvs.h"
#include "nvs_storage.h"
#include "nvs_test_flash.h"

static uint64_t s_erases; /* page erases over every boot of a test */

static void start(nvs_test_fixture_t *f, const char *name, uint32_t pages) {
    nvs_test_flash_path(f->path, sizeof(f->path), name);
    nvs_test_flash_open(&f->flash, f->path, true);
    f->pages = pages;
    assert_int_equal(nvs_storage_init(&f->st, &f->flash.io, pages), ESP_OK);
}

/* Power off and on: the engine forgets everything and loads the pages again. */
static void reboot(nvs_test_fixture_t *f) {
    s_erases += sim_flash_erase_count(f->flash.flash);
    nvs_storage_deinit(&f->st);
    nvs_test_flash_close(&f->flash);
    nvs_test_flash_open(&f->flash, f->path, false);
    assert_int_equal(nvs_storage_init(&f->st, &f->flash.io, f->pages), ESP_OK);
}

static void stop(nvs_test_fixture_t *f) {
    nvs_storage_deinit(&f->st);
    nvs_test_flash_close(&f->flash);
    unlink(f->path);
}

static uint8_t open_ns(nvs_test_fixture_t *f, const char *name) {
    uint8_t ns = 0;
    assert_int_equal(nvs_storage_open_namespace(&f->st, name, true, &ns), ESP_OK);
    return ns;
}

static void put_str(nvs_test_fixture_t *f, uint8_t ns, const char *key, const char *value) {
    assert_int_equal(
        nvs_storage_write(&f->st, ns, NVS_ITEM_SZ, key, value, strlen(value) + 1, false), ESP_OK);
}

static void expect_str(nvs_test_fixture_t *f, uint8_t ns, const char *key, const char *value) {
    size_t size = 0;
    assert_int_equal(nvs_storage_data_size(&f->st, ns, NVS_ITEM_SZ, key, &size), ESP_OK);
    assert_int_equal(size, strlen(value) + 1);
    char *buf = malloc(size);
    assert_int_equal(nvs_storage_read(&f->st, ns, NVS_ITEM_SZ, key, buf, size), ESP_OK);
    assert_string_equal(buf, value);
    free(buf);
}

static void expect_blob(nvs_test_fixture_t *f, uint8_t ns, const char *key, const uint8_t *value,
                        size_t len) {
    size_t size = 0;
    assert_int_equal(nvs_storage_data_size(&f->st, ns, NVS_ITEM_BLOB, key, &size), ESP_OK);
    assert_int_equal(size, len);
    uint8_t *buf = malloc(size + 1);
    assert_int_equal(nvs_storage_read(&f->st, ns, NVS_ITEM_BLOB, key, buf, size), ESP_OK);
    assert_memory_equal(buf, value, len);
    free(buf);
}

/* Written items of (ns, key) on flash, counted from the raw pages. */
static int live_copies(nvs_test_fixture_t *f, uint8_t ns, const char *key, uint8_t type) {
    int n = 0;
    for (uint32_t p = 0; p < f->pages; p++) {
        uint8_t page[NVS_PAGE_BYTES];
        sim_flash_read(f->flash.flash, NVS_TEST_BASE + p * NVS_PAGE_BYTES, page, sizeof(page));
        uint32_t state;
        memcpy(&state, page, 4);
        if (state != NVS_PAGE_ACTIVE && state != NVS_PAGE_FULL) {
            continue;
        }
        for (size_t i = 0; i < NVS_ENTRY_COUNT; i++) {
            unsigned es = (page[32 + i / 4] >> ((i % 4) * 2)) & 3u;
            const nvs_item_t *item = (const void *)(page + 64 + i * 32);
            if (es == NVS_ENTRY_WRITTEN && item->ns == ns && item->type == type &&
                nvs_item_consistent(item, i) && nvs_item_key_is(item, key)) {
                n++;
            }
        }
    }
    return n;
}

static void test_typed_values_survive_a_reboot(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-types", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    uint8_t u8 = 200;
    int16_t i16 = -1234;
    uint32_t u32 = 7200;
    int64_t i64 = -5000000000LL;
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_U8, "u8", &u8, 1, false), ESP_OK);
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_I16, "i16", &i16, 2, false), ESP_OK);
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_U32, "u32", &u32, 4, false), ESP_OK);
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_I64, "i64", &i64, 8, false), ESP_OK);
    put_str(&f, ns, "url", "https://ota.example:8080/api/ota/version");
    uint8_t blob[100];
    for (size_t i = 0; i < sizeof(blob); i++) {
        blob[i] = (uint8_t)(i * 7u);
    }
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "rec", blob, sizeof(blob), false),
                     ESP_OK);
    reboot(&f);
    ns = open_ns(&f, "csi_ota");
    uint8_t r8 = 0;
    int16_t r16 = 0;
    uint32_t r32 = 0;
    int64_t r64 = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U8, "u8", &r8, 1), ESP_OK);
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_I16, "i16", &r16, 2), ESP_OK);
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "u32", &r32, 4), ESP_OK);
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_I64, "i64", &r64, 8), ESP_OK);
    assert_int_equal(r8, 200);
    assert_int_equal(r16, -1234);
    assert_int_equal(r32, 7200);
    assert_true(r64 == -5000000000LL);
    expect_str(&f, ns, "url", "https://ota.example:8080/api/ota/version");
    expect_blob(&f, ns, "rec", blob, sizeof(blob));
    /* Wrong type (Storage::findItem gives up on a page's TYPE_MISMATCH: NOT_FOUND, as on a
     * board), unknown key, unknown namespace. */
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U8, "u32", &r8, 1),
                     ESP_ERR_NVS_NOT_FOUND);
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U8, "nope", &r8, 1),
                     ESP_ERR_NVS_NOT_FOUND);
    uint8_t other = 0;
    assert_int_equal(nvs_storage_open_namespace(&f.st, "other", false, &other),
                     ESP_ERR_NVS_NOT_FOUND);
    uint8_t type = 0;
    assert_int_equal(nvs_storage_find_key(&f.st, ns, "rec", &type), ESP_OK);
    assert_int_equal(type, NVS_ITEM_BLOB_IDX);
    stop(&f);
}

static void test_overwrite_leaves_one_live_copy(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-overwrite", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    uint8_t blob[300];
    for (uint32_t v = 0; v < 60; v++) {
        assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_U32, "count", &v, 4, false), ESP_OK);
        memset(blob, (int)v, sizeof(blob));
        assert_int_equal(
            nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "rec", blob, 50 + v * 4u, false), ESP_OK);
    }
    reboot(&f);
    ns = open_ns(&f, "csi_ota");
    uint32_t count = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "count", &count, 4), ESP_OK);
    assert_int_equal(count, 59);
    memset(blob, 59, sizeof(blob));
    expect_blob(&f, ns, "rec", blob, 50 + 59 * 4u);
    assert_int_equal(live_copies(&f, ns, "count", NVS_ITEM_U32), 1);
    assert_int_equal(live_copies(&f, ns, "rec", NVS_ITEM_BLOB_IDX), 1);
    assert_int_equal(live_copies(&f, ns, "rec", NVS_ITEM_BLOB_DATA), 1);
    /* Writing the same value again writes nothing. */
    uint64_t ops = sim_flash_op_count(f.flash.flash);
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_U32, "count", &count, 4, false), ESP_OK);
    assert_int_equal(sim_flash_op_count(f.flash.flash), ops);
    stop(&f);
}

static void test_erase_key_and_namespace(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-erase", 4);
    uint8_t a = open_ns(&f, "a");
    uint8_t b = open_ns(&f, "b");
    put_str(&f, a, "k1", "one");
    put_str(&f, a, "k2", "two");
    put_str(&f, b, "k1", "other");
    uint8_t blob[5000];
    memset(blob, 0x5A, sizeof(blob));
    assert_int_equal(nvs_storage_write(&f.st, a, NVS_ITEM_BLOB, "big", blob, sizeof(blob), false),
                     ESP_OK);
    assert_int_equal(nvs_storage_erase(&f.st, a, "k1", false), ESP_OK);
    assert_int_equal(nvs_storage_erase(&f.st, a, "k1", false), ESP_ERR_NVS_NOT_FOUND);
    reboot(&f);
    char buf[16];
    assert_int_equal(nvs_storage_read(&f.st, a, NVS_ITEM_SZ, "k1", buf, sizeof(buf)),
                     ESP_ERR_NVS_NOT_FOUND);
    expect_str(&f, a, "k2", "two");
    expect_blob(&f, a, "big", blob, sizeof(blob));
    assert_int_equal(nvs_storage_erase_namespace(&f.st, a, false), ESP_OK);
    reboot(&f);
    size_t size = 0;
    assert_int_equal(nvs_storage_data_size(&f.st, a, NVS_ITEM_SZ, "k2", &size),
                     ESP_ERR_NVS_NOT_FOUND);
    assert_int_equal(nvs_storage_data_size(&f.st, a, NVS_ITEM_BLOB, "big", &size),
                     ESP_ERR_NVS_NOT_FOUND);
    assert_int_equal(live_copies(&f, a, "big", NVS_ITEM_BLOB_DATA), 0);
    expect_str(&f, b, "k1", "other");
    stop(&f);
}

/* Thousands of overwrites through 4 pages: pages fill, garbage collection frees them (a page
 * is erased again and again), every value stays readable, one page stays free. */
static void test_garbage_collection_over_many_writes(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-gc", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    s_erases = 0;
    char key[16], value[200], expect[8][200];
    for (int i = 0; i < 3000; i++) {
        int k = i % 8;
        snprintf(key, sizeof(key), "key%d", k);
        int len = 1 + (i * 37) % 150;
        memset(value, 'a' + (i % 26), (size_t)len);
        value[len] = '\0';
        put_str(&f, ns, key, value);
        strcpy(expect[k], value);
        if (i % 500 == 499) {
            reboot(&f);
        }
    }
    reboot(&f);
    assert_true(s_erases > 50u);
    for (int k = 0; k < 8; k++) {
        snprintf(key, sizeof(key), "key%d", k);
        expect_str(&f, ns, key, expect[k]);
        assert_int_equal(live_copies(&f, ns, key, NVS_ITEM_SZ), 1);
    }
    assert_true(f.st.pm.free_len >= 1u);
    stop(&f);
}

static void test_full_partition_reports_no_space_and_keeps_values(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-full", 3);
    uint8_t ns = open_ns(&f, "csi_ota");
    char key[16];
    char value[100];
    memset(value, 'x', 99);
    value[99] = '\0';
    int written = 0;
    esp_err_t err = ESP_OK;
    for (int i = 0; i < 1000 && err == ESP_OK; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        err = nvs_storage_write(&f.st, ns, NVS_ITEM_SZ, key, value, 100, false);
        written += err == ESP_OK;
    }
    assert_int_equal(err, ESP_ERR_NVS_NOT_ENOUGH_SPACE);
    assert_true(written > 20 && written < 60); /* 2 of 3 pages, 5 entries per value */
    reboot(&f);
    for (int i = 0; i < written; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        expect_str(&f, ns, key, value);
    }
    /* Erasing makes room again. */
    for (int i = 0; i < written; i += 2) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(nvs_storage_erase(&f.st, ns, key, false), ESP_OK);
    }
    put_str(&f, ns, "again", value);
    expect_str(&f, ns, "again", value);
    stop(&f);
}

static void test_multi_page_blob(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-blob", 8);
    uint8_t ns = open_ns(&f, "csi_ota");
    uint8_t *blob = malloc(9000);
    for (size_t i = 0; i < 9000; i++) {
        blob[i] = (uint8_t)(i ^ (i >> 8));
    }
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "fw", blob, 9000, false), ESP_OK);
    assert_true(live_copies(&f, ns, "fw", NVS_ITEM_BLOB_DATA) >= 3);
    reboot(&f);
    expect_blob(&f, ns, "fw", blob, 9000);
    blob[4567] ^= 0xFF;
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "fw", blob, 9000, false), ESP_OK);
    reboot(&f);
    expect_blob(&f, ns, "fw", blob, 9000);
    assert_int_equal(live_copies(&f, ns, "fw", NVS_ITEM_BLOB_IDX), 1);
    /* Larger than (pages - 1) * 4000 bytes: refused. */
    uint8_t *huge = calloc(1, 28001);
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "huge", huge, 28001, false),
                     ESP_ERR_NVS_VALUE_TOO_LONG);
    free(huge);
    free(blob);
    stop(&f);
}

/* Two written copies of one key on the active page (a cut between "write new" and "erase
 * old"): the load keeps the newer one and erases the older. */
static void test_load_drops_the_older_of_two_copies(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-dup", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    uint32_t v1 = 1, v2 = 2;
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_U32, "n", &v1, 4, false), ESP_OK);
    put_str(&f, ns, "s", "between");
    nvs_page_t *page = nvs_pagemanager_back(&f.st.pm);
    assert_int_equal(nvs_page_write_item(page, ns, NVS_ITEM_U32, "n", &v2, 4, NVS_CHUNK_ANY),
                     ESP_OK);
    assert_int_equal(live_copies(&f, ns, "n", NVS_ITEM_U32), 2);
    reboot(&f);
    assert_int_equal(live_copies(&f, ns, "n", NVS_ITEM_U32), 1);
    uint32_t got = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "n", &got, 4), ESP_OK);
    assert_int_equal(got, 2);
    expect_str(&f, ns, "s", "between");
    stop(&f);
}

/* A page left FREEING (a cut during garbage collection): its items are copied to a new page
 * at load and it is erased. */
static void test_load_finishes_a_freeing_page(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-freeing", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    put_str(&f, ns, "keep", "kept across the cut");
    nvs_page_t *first = nvs_pagemanager_at(&f.st.pm, 0);
    uint32_t first_base = first->base;
    assert_int_equal(nvs_page_mark_freeing(first), ESP_OK);
    reboot(&f);
    expect_str(&f, ns, "keep", "kept across the cut");
    uint32_t state_word = 0;
    sim_flash_read(f.flash.flash, NVS_TEST_BASE + first_base, &state_word, 4);
    assert_int_equal(state_word, NVS_PAGE_UNINITIALIZED);
    assert_int_equal(live_copies(&f, ns, "keep", NVS_ITEM_SZ), 1);
    stop(&f);
}

/* An entry written but still EMPTY in the bitmap (a cut before the bitmap write): marked
 * ERASED at load, and the next write goes after it. */
static void test_load_skips_an_entry_written_without_its_bitmap(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-halfwritten", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    put_str(&f, ns, "a", "first");
    nvs_page_t *page = nvs_pagemanager_back(&f.st.pm);
    nvs_item_t junk;
    nvs_item_init(&junk, ns, NVS_ITEM_U32, 1, "ghost", NVS_CHUNK_ANY);
    junk.crc32 = nvs_item_crc(&junk);
    uint32_t at = NVS_TEST_BASE + page->base + 64u + (uint32_t)page->next_free * 32u;
    assert_int_equal(sim_flash_write(f.flash.flash, at, &junk, 16), SIM_FLASH_OK);
    reboot(&f);
    uint32_t v = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "ghost", &v, 4),
                     ESP_ERR_NVS_NOT_FOUND);
    put_str(&f, ns, "b", "second");
    reboot(&f);
    expect_str(&f, ns, "a", "first");
    expect_str(&f, ns, "b", "second");
    stop(&f);
}

/* ESP-IDF's load, modelled as it is: a blob overwrite cut after its new data chunk became the
 * last item of the active page and before the new BLOB_IDX was written. The "last item is not
 * duplicate" check searches BLOB_DATA with CHUNK_ANY, finds the old version's chunk on the same
 * page and erases it; Storage::init then drops the old index (its chunk is gone) and the new
 * chunk (no index owns it): the key is lost. A half-written index entry instead ends the scan
 * with an ERASED entry and the old value stays. */
static void test_load_as_esp_idf_loses_a_blob_cut_before_its_index(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-blobcut", 4);
    uint8_t ns = open_ns(&f, "csi_ota");
    uint8_t old_rec[40], new_rec[40];
    memset(old_rec, 0x11, sizeof(old_rec));
    memset(new_rec, 0x22, sizeof(new_rec));
    assert_int_equal(
        nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "rec", old_rec, sizeof(old_rec), false),
        ESP_OK);
    assert_int_equal(
        nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "other", old_rec, sizeof(old_rec), false),
        ESP_OK);
    nvs_page_t *page = nvs_pagemanager_back(&f.st.pm);
    assert_int_equal(nvs_page_write_item(page, ns, NVS_ITEM_BLOB_DATA, "rec", new_rec,
                                         sizeof(new_rec), NVS_VER_1),
                     ESP_OK);
    reboot(&f);
    size_t size = 0;
    assert_int_equal(nvs_storage_data_size(&f.st, ns, NVS_ITEM_BLOB, "rec", &size),
                     ESP_ERR_NVS_NOT_FOUND);
    assert_int_equal(live_copies(&f, ns, "rec", NVS_ITEM_BLOB_DATA), 0);
    expect_blob(&f, ns, "other", old_rec, sizeof(old_rec));

    /* The same cut, but the index entry half-written: the old value survives. */
    assert_int_equal(
        nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "rec", old_rec, sizeof(old_rec), false),
        ESP_OK);
    page = nvs_pagemanager_back(&f.st.pm);
    assert_int_equal(nvs_page_write_item(page, ns, NVS_ITEM_BLOB_DATA, "rec", new_rec,
                                         sizeof(new_rec), NVS_VER_1),
                     ESP_OK);
    nvs_item_t index;
    nvs_item_init(&index, ns, NVS_ITEM_BLOB_IDX, 1, "rec", NVS_CHUNK_ANY);
    index.crc32 = nvs_item_crc(&index);
    uint32_t at = NVS_TEST_BASE + page->base + 64u + (uint32_t)page->next_free * 32u;
    assert_int_equal(sim_flash_write(f.flash.flash, at, &index, 16), SIM_FLASH_OK);
    reboot(&f);
    expect_blob(&f, ns, "rec", old_rec, sizeof(old_rec));
    stop(&f);
}

/* The provisioning image of `csi-ota provision` (esp-idf-nvs-partition-gen) loads as it is,
 * and the engine's writes land in the same pages beside it. */
static void test_reads_and_extends_the_generator_image(void **state) {
    (void)state;
    char fixture[600];
    snprintf(fixture, sizeof(fixture), "%s/nvs_provision.bin", FIXTURE_DIR);
    FILE *in = fopen(fixture, "rb");
    assert_non_null(in);
    static uint8_t image[64 * 1024];
    size_t len = fread(image, 1, sizeof(image), in);
    fclose(in);
    assert_true(len >= 2u * NVS_PAGE_BYTES && len % NVS_PAGE_BYTES == 0);
    nvs_test_fixture_t f;
    nvs_test_flash_path(f.path, sizeof(f.path), "nvs-provision");
    nvs_test_flash_open(&f.flash, f.path, true);
    assert_int_equal(sim_flash_write(f.flash.flash, NVS_TEST_BASE, image, len), SIM_FLASH_OK);
    f.pages = (uint32_t)(len / NVS_PAGE_BYTES);
    assert_int_equal(nvs_storage_init(&f.st, &f.flash.io, f.pages), ESP_OK);
    uint8_t ns = 0;
    assert_int_equal(nvs_storage_open_namespace(&f.st, "csi_ota", false, &ns), ESP_OK);
    expect_str(&f, ns, "device_id", "csi_sensor_042");
    uint32_t interval = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "check_int_sec", &interval, 4),
                     ESP_OK);
    assert_int_equal(interval, 7200);
    uint8_t rec[64];
    memset(rec, 0xA5, sizeof(rec));
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "boot_rec", rec, 64, false),
                     ESP_OK);
    put_str(&f, ns, "device_id", "csi_sensor_043");
    reboot(&f);
    expect_str(&f, ns, "device_id", "csi_sensor_043");
    expect_blob(&f, ns, "boot_rec", rec, sizeof(rec));
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "check_int_sec", &interval, 4),
                     ESP_OK);
    stop(&f);
}

/* Damaged items of the provisioning image (a flipped bit in a string's data, in a value):
 * NVS drops them — the string at its read (data CRC), the value at load (entry CRC) — and
 * every other key still reads; the partition still takes writes. */
static void test_damaged_items_are_dropped_and_the_rest_reads(void **state) {
    (void)state;
    char fixture[600];
    snprintf(fixture, sizeof(fixture), "%s/nvs_provision.bin", FIXTURE_DIR);
    FILE *in = fopen(fixture, "rb");
    assert_non_null(in);
    static uint8_t image[64 * 1024];
    size_t len = fread(image, 1, sizeof(image), in);
    fclose(in);
    const uint8_t *id = memmem(image, len, "device_id", 10);
    const uint8_t *interval = memmem(image, len, "check_int_sec", 14);
    assert_non_null(id);
    assert_non_null(interval);
    image[(size_t)(id - image) - 8u + 32u + 3u] ^= 0x01;  /* a byte of the string */
    image[(size_t)(interval - image) - 8u + 24u] ^= 0x01; /* the u32 value */
    nvs_test_fixture_t f;
    nvs_test_flash_path(f.path, sizeof(f.path), "nvs-damaged");
    nvs_test_flash_open(&f.flash, f.path, true);
    assert_int_equal(sim_flash_write(f.flash.flash, NVS_TEST_BASE, image, len), SIM_FLASH_OK);
    f.pages = (uint32_t)(len / NVS_PAGE_BYTES);
    assert_int_equal(nvs_storage_init(&f.st, &f.flash.io, f.pages), ESP_OK);
    uint8_t ns = open_ns(&f, "csi_ota");
    uint32_t v = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "check_int_sec", &v, 4),
                     ESP_ERR_NVS_NOT_FOUND);
    size_t size = 0;
    assert_int_equal(nvs_storage_data_size(&f.st, ns, NVS_ITEM_SZ, "device_id", &size), ESP_OK);
    char text[64];
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_SZ, "device_id", text, size),
                     ESP_ERR_NVS_NOT_FOUND);
    assert_int_equal(nvs_storage_data_size(&f.st, ns, NVS_ITEM_SZ, "device_id", &size),
                     ESP_ERR_NVS_NOT_FOUND); /* erased when its CRC failed */
    expect_str(&f, ns, "update_url", "https://ota.example:8080/api/ota/firmware");
    put_str(&f, ns, "device_id", "csi_sensor_044");
    reboot(&f);
    expect_str(&f, ns, "device_id", "csi_sensor_044");
    stop(&f);
}

/* A header of a newer NVS format: ESP_ERR_NVS_NEW_VERSION_FOUND, as nvs_flash_init reports. */
static void test_newer_format_is_reported(void **state) {
    (void)state;
    nvs_test_fixture_t f;
    start(&f, "nvs-version", 4);
    uint8_t ns = open_ns(&f, "x");
    put_str(&f, ns, "k", "v");
    nvs_storage_deinit(&f.st);
    uint8_t header[32];
    sim_flash_read(f.flash.flash, NVS_TEST_BASE, header, 32);
    sim_flash_erase_sector(f.flash.flash, NVS_TEST_BASE);
    header[8] = 0xFD;
    uint32_t crc = nvs_crc32(0xFFFFFFFFu, header + 4, 24);
    memcpy(header + 28, &crc, 4);
    sim_flash_write(f.flash.flash, NVS_TEST_BASE, header, 32);
    assert_int_equal(nvs_storage_init(&f.st, &f.flash.io, 4), ESP_ERR_NVS_NEW_VERSION_FOUND);
    nvs_storage_deinit(&f.st);
    nvs_test_flash_close(&f.flash);
    unlink(f.path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_values_survive_a_reboot),
        cmocka_unit_test(test_overwrite_leaves_one_live_copy),
        cmocka_unit_test(test_erase_key_and_namespace),
        cmocka_unit_test(test_garbage_collection_over_many_writes),
        cmocka_unit_test(test_full_partition_reports_no_space_and_keeps_values),
        cmocka_unit_test(test_multi_page_blob),
        cmocka_unit_test(test_load_drops_the_older_of_two_copies),
        cmocka_unit_test(test_load_finishes_a_freeing_page),
        cmocka_unit_test(test_load_skips_an_entry_written_without_its_bitmap),
        cmocka_unit_test(test_load_as_esp_idf_loses_a_blob_cut_before_its_index),
        cmocka_unit_test(test_reads_and_extends_the_generator_image),
        cmocka_unit_test(test_damaged_items_are_dropped_and_the_rest_reads),
        cmocka_unit_test(test_newer_format_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
