/* test_csi_frame.c — the binary CSI frame of docs/csi-frame.md, byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h> /* after the headers it needs */

#include "csi_frame.h"

static uint32_t read_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_device_hash_is_fnv1a_32(void **state) {
    (void)state;
    assert_int_equal(csi_frame_device_hash(""), 2166136261u);  /* offset basis */
    assert_int_equal(csi_frame_device_hash("a"), 0xe40c292cu); /* published FNV-1a vector */
    assert_int_equal(csi_frame_device_hash("foobar"), 0xbf9cf968u);
}

static void test_header_layout_is_little_endian_40_bytes(void **state) {
    (void)state;
    const csi_frame_meta_t meta = {
        .flags = CSI_FRAME_FLAG_BW_40MHZ,
        .device_hash = 0x11223344u,
        .frame_seq = 0x01020304u,
        .timestamp_us = 0x0102030405060708ull,
        .rx_timestamp_us = 0xA1B2C3D4u,
        .src_mac = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01},
        .rssi = -61,
        .noise_floor = -95,
        .channel = 6,
        .secondary_channel = 1,
        .rate = 11,
        .mcs = 7,
        .sig_mode = 1,
    };
    const int8_t data[6] = {-1, 2, -3, 4, 127, -128};
    uint8_t out[CSI_FRAME_MAX_BYTES];
    assert_int_equal(csi_frame_encode(&meta, data, sizeof(data), out, sizeof(out)), 46);
    const uint8_t expected[40] = {
        'C',
        'S',
        1,
        CSI_FRAME_FLAG_BW_40MHZ,
        0x44,
        0x33,
        0x22,
        0x11, /* device_hash */
        0x04,
        0x03,
        0x02,
        0x01, /* frame_seq */
        0x08,
        0x07,
        0x06,
        0x05,
        0x04,
        0x03,
        0x02,
        0x01, /* timestamp_us */
        0xD4,
        0xC3,
        0xB2,
        0xA1, /* rx_timestamp_us */
        0xde,
        0xad,
        0xbe,
        0xef,
        0x00,
        0x01, /* src_mac */
        (uint8_t)-61,
        (uint8_t)-95,
        6,
        1,
        11,
        7,
        1,
        0, /* rssi … reserved */
        6,
        0, /* csi_len */
    };
    assert_memory_equal(out, expected, sizeof(expected));
    assert_memory_equal(out + CSI_FRAME_HEADER_BYTES, data, sizeof(data));
}

static void test_long_data_is_cut_and_flagged(void **state) {
    (void)state;
    csi_frame_meta_t meta = {.flags = CSI_FRAME_FLAG_FIRST_WORD_INVALID};
    int8_t data[CSI_FRAME_MAX_DATA_BYTES + 100];
    memset(data, 5, sizeof(data));
    uint8_t out[CSI_FRAME_MAX_BYTES];
    assert_int_equal(csi_frame_encode(&meta, data, sizeof(data), out, sizeof(out)),
                     CSI_FRAME_MAX_BYTES);
    assert_int_equal(out[3], CSI_FRAME_FLAG_FIRST_WORD_INVALID | CSI_FRAME_FLAG_TRUNCATED);
    assert_int_equal(out[38] | out[39] << 8, CSI_FRAME_MAX_DATA_BYTES);
    assert_int_equal(read_u32(out + 4), 0);
}

static void test_too_small_buffer_writes_nothing(void **state) {
    (void)state;
    csi_frame_meta_t meta = {0};
    int8_t data[10] = {0};
    uint8_t out[CSI_FRAME_HEADER_BYTES + 9];
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(csi_frame_encode(&meta, data, sizeof(data), out, sizeof(out)), 0);
    assert_int_equal(out[0], 0xAA);
    assert_int_equal(csi_frame_encode(&meta, NULL, 0, out, sizeof(out)), CSI_FRAME_HEADER_BYTES);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_hash_is_fnv1a_32),
        cmocka_unit_test(test_header_layout_is_little_endian_40_bytes),
        cmocka_unit_test(test_long_data_is_cut_and_flagged),
        cmocka_unit_test(test_too_small_buffer_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
