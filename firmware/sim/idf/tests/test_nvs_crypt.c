/* test_nvs_crypt.c — NVS encryption (nvs_crypt.h) in the engine: with the eFuse HMAC key every
 * entry is XTS-AES encrypted on flash (no plaintext in the raw pages, page headers and bitmaps
 * in clear) and reads back over reboots and garbage collection; the encrypted image of ESP-IDF's
 * generator (`csi-ota provision --encrypt`) reads and takes writes; with another key or none,
 * the entries fail their CRC and NVS drops them. */
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
#include "nvs_crypt.h"
#include "nvs_page.h"
#include "nvs_storage.h"
#include "nvs_test_flash.h"

#define PAGES 4u
#define FIXTURE_PAGES 6u /* nvs_provision_enc.bin: 0x6000 bytes */

static void key_of(uint8_t key[32], uint8_t first) {
    for (int i = 0; i < 32; i++) {
        key[i] = (uint8_t)(first + i);
    }
}

/* Powers the partition on with crypt (NULL: no key in eFuse); create erases the chip. */
static esp_err_t power_on(nvs_test_fixture_t *f, const nvs_crypt_t *crypt, bool create) {
    nvs_test_flash_open(&f->flash, f->path, create);
    f->flash.io.crypt = crypt;
    return nvs_storage_init(&f->st, &f->flash.io, f->pages);
}

/* A cipher keyed with key_of(first) and a fixture on its own flash file of `pages` pages. */
static void crypt_fixture(nvs_crypt_t *crypt, uint8_t first, nvs_test_fixture_t *f,
                          const char *name, uint32_t pages) {
    uint8_t key[32];
    key_of(key, first);
    assert_true(nvs_crypt_init(crypt, key));
    nvs_test_flash_path(f->path, sizeof(f->path), name);
    f->pages = pages;
}

static void power_off(nvs_test_fixture_t *f) {
    nvs_storage_deinit(&f->st);
    nvs_test_flash_close(&f->flash);
}

static void put_str(nvs_test_fixture_t *f, uint8_t ns, const char *key, const char *value) {
    assert_int_equal(
        nvs_storage_write(&f->st, ns, NVS_ITEM_SZ, key, value, strlen(value) + 1, false), ESP_OK);
}

static void expect_str(nvs_test_fixture_t *f, uint8_t ns, const char *key, const char *value) {
    char buf[256];
    size_t size = 0;
    assert_int_equal(nvs_storage_data_size(&f->st, ns, NVS_ITEM_SZ, key, &size), ESP_OK);
    assert_int_equal(size, strlen(value) + 1);
    assert_int_equal(nvs_storage_read(&f->st, ns, NVS_ITEM_SZ, key, buf, size), ESP_OK);
    assert_string_equal(buf, value);
}

/* The raw partition holds none of needles; every page header is in clear (a valid state). */
static void expect_ciphertext(nvs_test_fixture_t *f, const char *const *needles, size_t count) {
    static uint8_t raw[FIXTURE_PAGES * NVS_PAGE_BYTES];
    size_t len = f->pages * NVS_PAGE_BYTES;
    assert_true(len <= sizeof(raw));
    assert_int_equal(sim_flash_read(f->flash.flash, NVS_TEST_BASE, raw, len), SIM_FLASH_OK);
    for (size_t i = 0; i < count; i++) {
        assert_null(memmem(raw, len, needles[i], strlen(needles[i])));
    }
    size_t written = 0;
    for (uint32_t p = 0; p < f->pages; p++) {
        const uint8_t *page = raw + p * NVS_PAGE_BYTES;
        uint32_t state;
        memcpy(&state, page, 4);
        if (state != NVS_PAGE_ACTIVE && state != NVS_PAGE_FULL) {
            continue;
        }
        uint32_t crc;
        memcpy(&crc, page + 28, 4);
        assert_int_equal(crc, nvs_page_header_crc(page));
        for (size_t e = 0; e < NVS_ENTRY_COUNT; e++) {
            unsigned es = (page[32 + e / 4] >> ((e % 4) * 2)) & 3u;
            const nvs_item_t *item = (const void *)(page + 64 + e * 32);
            if (es == NVS_ENTRY_WRITTEN) {
                written++;
                /* a written entry is not a consistent item in clear */
                assert_false(nvs_item_consistent(item, e));
            }
        }
    }
    assert_true(written > 0);
}

static void test_entries_are_encrypted_and_read_back(void **state) {
    (void)state;
    nvs_crypt_t crypt;
    nvs_test_fixture_t f;
    crypt_fixture(&crypt, 0x10, &f, "nvs-crypt", PAGES);
    assert_int_equal(power_on(&f, &crypt, true), ESP_OK);
    uint8_t ns = 0;
    assert_int_equal(nvs_storage_open_namespace(&f.st, "csi_ota", true, &ns), ESP_OK);
    put_str(&f, ns, "auth_token", "secret-token-0042");
    uint32_t interval = 7200;
    assert_int_equal(
        nvs_storage_write(&f.st, ns, NVS_ITEM_U32, "check_int_sec", &interval, 4, false), ESP_OK);
    uint8_t blob[3000]; /* a multi-page blob */
    for (size_t i = 0; i < sizeof(blob); i++) {
        blob[i] = (uint8_t)("blob-plaintext-"[i % 15]);
    }
    assert_int_equal(nvs_storage_write(&f.st, ns, NVS_ITEM_BLOB, "big", blob, sizeof(blob), false),
                     ESP_OK);
    /* overwrites to move through pages and garbage collection */
    char value[64];
    for (int i = 0; i < 200; i++) {
        snprintf(value, sizeof(value), "device-name-%03d", i);
        put_str(&f, ns, "device_id", value);
    }
    power_off(&f);

    assert_int_equal(power_on(&f, &crypt, false), ESP_OK);
    assert_int_equal(nvs_storage_open_namespace(&f.st, "csi_ota", false, &ns), ESP_OK);
    expect_str(&f, ns, "auth_token", "secret-token-0042");
    expect_str(&f, ns, "device_id", "device-name-199");
    interval = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "check_int_sec", &interval, 4),
                     ESP_OK);
    assert_int_equal(interval, 7200);
    static uint8_t back[sizeof(blob)];
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_BLOB, "big", back, sizeof(back)), ESP_OK);
    assert_memory_equal(back, blob, sizeof(blob));
    static const char *const secrets[] = {"secret-token", "device-name", "blob-plaintext",
                                          "csi_ota",      "auth_token",  "check_int_sec"};
    expect_ciphertext(&f, secrets, sizeof(secrets) / sizeof(secrets[0]));
    power_off(&f);

    /* Another chip (another eFuse key, or none): every entry fails its CRC and is dropped. */
    uint8_t other_key[32];
    key_of(other_key, 0x11);
    nvs_crypt_t other;
    assert_true(nvs_crypt_init(&other, other_key));
    const nvs_crypt_t *others[] = {&other, NULL};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(power_on(&f, others[i], false), ESP_OK);
        assert_int_equal(nvs_storage_open_namespace(&f.st, "csi_ota", false, &ns),
                         ESP_ERR_NVS_NOT_FOUND);
        power_off(&f);
    }
    unlink(f.path);
}

/* The encrypted image of `csi-ota provision --encrypt` (esp-idf-nvs-partition-gen `encrypt`,
 * make_fixtures.py: NVS_HMAC_KEY = 00 01 .. 1f) reads with the key and takes writes. */
static void test_reads_the_generator_encrypted_image(void **state) {
    (void)state;
    char fixture[600];
    snprintf(fixture, sizeof(fixture), "%s/nvs_provision_enc.bin", FIXTURE_DIR);
    FILE *in = fopen(fixture, "rb");
    assert_non_null(in);
    static uint8_t image[FIXTURE_PAGES * NVS_PAGE_BYTES];
    size_t len = fread(image, 1, sizeof(image), in);
    fclose(in);
    assert_int_equal(len, sizeof(image));
    assert_null(memmem(image, len, "csi_sensor_042", 14));
    nvs_crypt_t crypt;
    nvs_test_fixture_t f;
    crypt_fixture(&crypt, 0x00, &f, "nvs-crypt-gen", FIXTURE_PAGES);
    nvs_test_flash_open(&f.flash, f.path, true);
    assert_int_equal(sim_flash_write(f.flash.flash, NVS_TEST_BASE, image, len), SIM_FLASH_OK);
    nvs_test_flash_close(&f.flash);
    assert_int_equal(power_on(&f, &crypt, false), ESP_OK);
    uint8_t ns = 0;
    assert_int_equal(nvs_storage_open_namespace(&f.st, "csi_ota", true, &ns), ESP_OK);
    expect_str(&f, ns, "device_id", "csi_sensor_042");
    expect_str(&f, ns, "update_url", "https://ota.example:8080/api/ota/firmware");
    uint32_t interval = 0;
    assert_int_equal(nvs_storage_read(&f.st, ns, NVS_ITEM_U32, "check_int_sec", &interval, 4),
                     ESP_OK);
    assert_int_equal(interval, 7200);
    put_str(&f, ns, "device_id", "csi_sensor_043");
    power_off(&f);
    assert_int_equal(power_on(&f, &crypt, false), ESP_OK);
    expect_str(&f, ns, "device_id", "csi_sensor_043");
    static const char *const secrets[] = {"csi_sensor_04", "ota.example", "device_id"};
    expect_ciphertext(&f, secrets, sizeof(secrets) / sizeof(secrets[0]));
    power_off(&f);

    /* without the key the image reads as nothing */
    assert_int_equal(power_on(&f, NULL, false), ESP_OK);
    assert_int_equal(nvs_storage_open_namespace(&f.st, "csi_ota", false, &ns),
                     ESP_ERR_NVS_NOT_FOUND);
    power_off(&f);
    unlink(f.path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_are_encrypted_and_read_back),
        cmocka_unit_test(test_reads_the_generator_encrypted_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
