/* test_ota_image_header.c — esp_image_header_t parsing and chip checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <string.h>

#include "ota_image_header.h"

/* A header as esptool writes it for an ESP32-S3 app (chip 9, rev 0.0–0.99). */
static void make_header(uint8_t h[24], uint16_t chip, uint16_t min_rev, uint16_t max_rev) {
    memset(h, 0, 24);
    h[0] = 0xE9;
    h[1] = 4;    /* segments */
    h[2] = 2;    /* DIO */
    h[3] = 0x20; /* 4MB, 80MHz */
    h[4] = 0x00; /* entry 0x40374100 */
    h[5] = 0x41;
    h[6] = 0x37;
    h[7] = 0x40;
    h[8] = 0xEE; /* wp pin */
    h[12] = (uint8_t)(chip & 0xFF);
    h[13] = (uint8_t)(chip >> 8);
    h[14] = (uint8_t)(min_rev / 100);
    h[15] = (uint8_t)(min_rev & 0xFF);
    h[16] = (uint8_t)(min_rev >> 8);
    h[17] = (uint8_t)(max_rev & 0xFF);
    h[18] = (uint8_t)(max_rev >> 8);
    h[23] = 1; /* hash appended */
}

static void test_parse_fields(void **state) {
    (void)state;
    uint8_t h[24];
    make_header(h, 9, 1, 99);
    ota_image_header_t out;
    assert_int_equal(ota_image_header_parse(h, sizeof(h), &out), OTA_OK);
    assert_int_equal(out.magic, 0xE9);
    assert_int_equal(out.segment_count, 4);
    assert_int_equal(out.entry_addr, 0x40374100u);
    assert_int_equal(out.chip_id, 9);
    assert_int_equal(out.min_chip_rev_full, 1);
    assert_int_equal(out.max_chip_rev_full, 99);
    assert_int_equal(out.hash_appended, 1);
}

static void test_parse_rejects(void **state) {
    (void)state;
    uint8_t h[24];
    ota_image_header_t out;
    make_header(h, 9, 0, 99);
    assert_int_equal(ota_image_header_parse(h, 23, &out), OTA_ERR_IMAGE_HEADER);
    h[0] = 0xE8;
    assert_int_equal(ota_image_header_parse(h, sizeof(h), &out), OTA_ERR_IMAGE_HEADER);
    make_header(h, 9, 0, 99);
    h[1] = 0;
    assert_int_equal(ota_image_header_parse(h, sizeof(h), &out), OTA_ERR_IMAGE_HEADER);
    h[1] = 17;
    assert_int_equal(ota_image_header_parse(h, sizeof(h), &out), OTA_ERR_IMAGE_HEADER);
    h[1] = 16;
    assert_int_equal(ota_image_header_parse(h, sizeof(h), &out), OTA_OK);
}

static void test_chip_checks(void **state) {
    (void)state;
    uint8_t h[24];
    ota_image_header_t out;
    make_header(h, 9, 100, 199);
    assert_int_equal(ota_image_header_parse(h, sizeof(h), &out), OTA_OK);
    assert_int_equal(ota_image_header_check_chip(&out, 5, 100), OTA_ERR_CHIP_ID);
    assert_int_equal(ota_image_header_check_chip(&out, 9, 99), OTA_ERR_CHIP_REVISION);
    assert_int_equal(ota_image_header_check_chip(&out, 9, 100), OTA_OK);
    assert_int_equal(ota_image_header_check_chip(&out, 9, 199), OTA_OK);
    assert_int_equal(ota_image_header_check_chip(&out, 9, 200), OTA_ERR_CHIP_REVISION);
    /* ESP-IDF's IS_FIELD_SET: max 0 and 0xFFFF mean no upper limit */
    make_header(h, 9, 0, 0);
    ota_image_header_parse(h, sizeof(h), &out);
    assert_int_equal(ota_image_header_check_chip(&out, 9, 300), OTA_OK);
    make_header(h, 9, 0, 0xFFFF);
    ota_image_header_parse(h, sizeof(h), &out);
    assert_int_equal(ota_image_header_check_chip(&out, 9, 300), OTA_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_chip_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
