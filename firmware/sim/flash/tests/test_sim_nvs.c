/* test_sim_nvs.c — the NVS reader against an image made by ESP-IDF's own generator
 * (fixtures/nvs_provision.bin, see make_fixtures.py NVS_CONFIG), and damaged copies of it. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_nvs.h"
#include "sim_test_support.h"

#define NS "csi_ota"

static uint8_t *nvs_image(size_t *len) {
    return t_fixture("nvs_provision.bin", len);
}

/* Offset of the entry whose key is key (the first one), failing the test if absent. */
static size_t entry_of(const uint8_t *image, size_t len, const char *key) {
    char padded[16] = {0};
    memcpy(padded, key, strlen(key));
    const uint8_t *hit = memmem(image, len, padded, strlen(key) + 1);
    assert_non_null(hit);
    return (size_t)(hit - image) - 8u;
}

static void test_reads_what_the_generator_wrote(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *image = nvs_image(&len);
    char text[4000];
    assert_int_equal(sim_nvs_get_str(image, len, NS, "device_id", text, sizeof(text)), SIM_NVS_OK);
    assert_string_equal(text, "csi_sensor_042");
    assert_int_equal(sim_nvs_get_str(image, len, NS, "update_url", text, sizeof(text)), SIM_NVS_OK);
    assert_string_equal(text, "https://ota.example:8080/api/ota/firmware");
    assert_int_equal(sim_nvs_get_str(image, len, NS, "version_url", text, sizeof(text)),
                     SIM_NVS_OK);
    assert_string_equal(text, "https://ota.example:8080/api/ota/version");
    assert_int_equal(sim_nvs_get_str(image, len, NS, "ca_cert", text, sizeof(text)), SIM_NVS_OK);
    assert_true(strncmp(text, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    assert_non_null(strstr(text, "-----END CERTIFICATE-----\n")); /* spans many entries */
    assert_true(strlen(text) > 300u);
    uint32_t interval = 0;
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "check_int_sec", &interval), SIM_NVS_OK);
    assert_int_equal(interval, 7200);
    uint8_t auto_update = 1;
    assert_int_equal(sim_nvs_get_u8(image, len, NS, "auto_update", &auto_update), SIM_NVS_OK);
    assert_int_equal(auto_update, 0);
    free(image);
}

static void test_absent_mistyped_and_oversized_values(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *image = nvs_image(&len);
    char small[8];
    uint32_t u32 = 0;
    assert_int_equal(sim_nvs_get_str(image, len, NS, "wifi_ssid", small, sizeof(small)),
                     SIM_NVS_NOT_FOUND);
    assert_int_equal(sim_nvs_get_str(image, len, "other_ns", "device_id", small, sizeof(small)),
                     SIM_NVS_NOT_FOUND);
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "device_id", &u32), SIM_NVS_TYPE_MISMATCH);
    assert_int_equal(sim_nvs_get_str(image, len, NS, "device_id", small, sizeof(small)),
                     SIM_NVS_TOO_LONG);
    assert_int_equal(sim_nvs_get_u32(image, len - 1, NS, "check_int_sec", &u32), SIM_NVS_ERR_ARG);
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "a_key_far_too_long", &u32), SIM_NVS_ERR_ARG);
    memset(image, 0xFF, len); /* erased partition */
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "check_int_sec", &u32), SIM_NVS_NOT_FOUND);
    free(image);
}

static void test_damaged_entries_are_skipped_like_nvs_does(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *image = nvs_image(&len);
    char text[64];
    uint32_t u32 = 0;
    size_t id = entry_of(image, len, "device_id");
    image[id + 32 + 3] ^= 0x01; /* a byte of the string: data CRC mismatch */
    assert_int_equal(sim_nvs_get_str(image, len, NS, "device_id", text, sizeof(text)),
                     SIM_NVS_NOT_FOUND);
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "check_int_sec", &u32), SIM_NVS_OK);
    size_t interval = entry_of(image, len, "check_int_sec");
    image[interval + 24] ^= 0x01; /* the value: entry CRC mismatch */
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "check_int_sec", &u32), SIM_NVS_NOT_FOUND);
    image[4] ^= 0x01; /* the first page's sequence number: header CRC mismatch */
    assert_int_equal(sim_nvs_get_str(image, len, NS, "update_url", text, sizeof(text)),
                     SIM_NVS_NOT_FOUND);
    free(image);
}

static void test_an_erased_entry_is_not_read(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *image = nvs_image(&len);
    size_t entry = entry_of(image, len, "check_int_sec");
    size_t page = entry / SIM_NVS_PAGE_BYTES * SIM_NVS_PAGE_BYTES;
    size_t index = (entry - page - 64u) / 32u;
    image[page + 32 + index / 4] &= (uint8_t) ~(0x3u << ((index % 4) * 2)); /* state 00: erased */
    uint32_t u32 = 0;
    assert_int_equal(sim_nvs_get_u32(image, len, NS, "check_int_sec", &u32), SIM_NVS_NOT_FOUND);
    free(image);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_what_the_generator_wrote),
        cmocka_unit_test(test_absent_mistyped_and_oversized_values),
        cmocka_unit_test(test_damaged_entries_are_skipped_like_nvs_does),
        cmocka_unit_test(test_an_erased_entry_is_not_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
