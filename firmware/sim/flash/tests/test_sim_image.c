/* test_sim_image.c — app image verification against real imagegen images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_digest.h"
#include "sim_image.h"
#include "sim_test_support.h"

static sim_image_result_t verify(sim_flash_t *flash, uint32_t part_size, uint16_t rev,
                                 sim_image_info_t *info, char *why, size_t why_len) {
    return sim_image_verify(flash, T_OTA0_OFFSET, part_size, rev, info, why, why_len);
}

static void test_valid_image_and_app_desc(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    sim_image_info_t info;
    char why[160];
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, &info, why, sizeof(why)), SIM_IMAGE_OK);
    assert_int_equal(info.chip_id, 9);
    assert_true(info.hash_appended);
    size_t len = 0;
    uint8_t *raw = t_fixture("app_v1.bin", &len);
    assert_int_equal(info.segment_count, raw[1]); /* esptool's padding segments included */
    assert_true(info.segment_count >= 4);
    free(raw);
    assert_int_equal(info.image_len_bytes, 70000);
    assert_true(info.has_app_desc);
    assert_string_equal(info.app_desc.version, "1.0.0");
    assert_string_equal(info.app_desc.project_name, "csi_sensor");
    assert_string_equal(info.behaviour, "normal");
    ota_app_desc_t desc;
    assert_int_equal(sim_image_read_app_desc(flash, T_OTA0_OFFSET, &desc), SIM_IMAGE_OK);
    assert_string_equal(desc.version, "1.0.0");
    /* The slot after it is erased: no image, no app description. */
    assert_int_equal(sim_image_verify(flash, T_OTA1_OFFSET, T_SLOT_SIZE, 0, NULL, why, sizeof(why)),
                     SIM_IMAGE_ERR_MAGIC);
    assert_non_null(strstr(why, "invalid magic byte (nothing flashed here?)"));
    assert_int_equal(sim_image_read_app_desc(flash, T_OTA1_OFFSET, &desc), SIM_IMAGE_ERR_APP_DESC);
    t_flash_free(flash);
}

static void test_behaviour_markers(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v2_crash.bin");
    t_put_image(flash, T_OTA1_OFFSET, "app_v2_selftest.bin");
    sim_image_info_t info;
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, &info, NULL, 0), SIM_IMAGE_OK);
    assert_string_equal(info.behaviour, "crash_at_boot");
    assert_int_equal(sim_image_verify(flash, T_OTA1_OFFSET, T_SLOT_SIZE, 0, &info, NULL, 0),
                     SIM_IMAGE_OK);
    assert_string_equal(info.behaviour, "fail_selftest");
    t_flash_free(flash);
}

static void test_flipped_data_bit_fails_checksum(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    t_flip_bit(flash, T_OTA0_OFFSET + 40000); /* inside segment data */
    char why[160];
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)), SIM_IMAGE_ERR_CHECKSUM);
    assert_non_null(strstr(why, "Checksum failed. Calculated"));
    t_flash_free(flash);
}

static void test_flipped_digest_bit_fails_hash(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    t_flip_bit(flash, T_OTA0_OFFSET + 70000 - 1); /* last byte of the appended SHA-256 */
    char why[160];
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)), SIM_IMAGE_ERR_DIGEST);
    assert_string_equal(why, "Image hash failed - image is corrupt");
    t_flash_free(flash);
}

static void test_truncated_image_fails(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    size_t len = 0;
    uint8_t *image = t_fixture("app_v1.bin", &len);
    assert_int_equal(sim_flash_write(flash, T_OTA0_OFFSET, image, 65536),
                     SIM_FLASH_OK); /* the rest stays 0xFF */
    free(image);
    assert_int_not_equal(verify(flash, T_SLOT_SIZE, 0, NULL, NULL, 0), SIM_IMAGE_OK);
    t_flash_free(flash);
}

static void test_image_larger_than_partition(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    char why[160];
    assert_int_equal(verify(flash, 65536, 0, NULL, why, sizeof(why)), SIM_IMAGE_ERR_TOO_LARGE);
    assert_string_equal(why, "Image length 70000 doesn't fit in partition length 65536");
    t_flash_free(flash);
}

static void test_chip_id_and_revision(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_chip5.bin");
    t_put_image(flash, T_OTA1_OFFSET, "app_minrev100.bin");
    char why[160];
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)), SIM_IMAGE_ERR_CHIP_ID);
    assert_string_equal(why, "mismatch chip ID, expected 9, found 5");
    assert_int_equal(sim_image_verify(flash, T_OTA1_OFFSET, T_SLOT_SIZE, 0, NULL, why, sizeof(why)),
                     SIM_IMAGE_ERR_CHIP_REVISION);
    assert_string_equal(why, "chip revision check failed. Required >= v1.0, found v0.0.");
    /* max_rev_full 99 in the normal imagegen images: v0.99 boots, v1.0 does not. */
    t_put_image(flash, T_OTA0_OFFSET + T_SLOT_SIZE * 2, "app_v1.bin");
    uint32_t v1_offset = T_OTA0_OFFSET + T_SLOT_SIZE * 2;
    assert_int_equal(sim_image_verify(flash, v1_offset, T_SLOT_SIZE, 99, NULL, NULL, 0),
                     SIM_IMAGE_OK);
    assert_int_equal(sim_image_verify(flash, v1_offset, T_SLOT_SIZE, 100, NULL, why, sizeof(why)),
                     SIM_IMAGE_ERR_CHIP_REVISION);
    assert_string_equal(why, "chip revision check failed. Required <= v0.99, found v1.0.");
    t_flash_free(flash);
}

static void test_header_fields_checked(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *image = t_fixture("app_v1.bin", &len);
    sim_flash_t *flash = t_flash_new(NULL);
    char why[160];

    image[1] = 17; /* segment count */
    assert_int_equal(sim_flash_write(flash, T_OTA0_OFFSET, image, len), SIM_FLASH_OK);
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)),
                     SIM_IMAGE_ERR_SEGMENT_COUNT);
    assert_non_null(strstr(why, "segment count 17 exceeds max 16"));
    image[1] = 4;

    uint32_t seg0_len = (uint32_t)image[28] | ((uint32_t)image[29] << 8);
    image[28] = (uint8_t)(seg0_len + 2); /* not a multiple of 4 */
    assert_int_equal(sim_flash_erase_range(flash, T_OTA0_OFFSET, 0x12000), SIM_FLASH_OK);
    assert_int_equal(sim_flash_write(flash, T_OTA0_OFFSET, image, len), SIM_FLASH_OK);
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)),
                     SIM_IMAGE_ERR_SEGMENT_LENGTH);

    image[28] = 0x80; /* 128 bytes: shorter than esp_app_desc_t */
    image[29] = 0;
    image[30] = 0;
    image[31] = 0;
    assert_int_equal(sim_flash_erase_range(flash, T_OTA0_OFFSET, 0x12000), SIM_FLASH_OK);
    assert_int_equal(sim_flash_write(flash, T_OTA0_OFFSET, image, len), SIM_FLASH_OK);
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)), SIM_IMAGE_ERR_APP_DESC);
    free(image);
    t_flash_free(flash);
}

/* Changes one byte inside segment data and fixes the checksum byte and the appended SHA-256. */
static void patch_sealed(uint8_t *image, size_t len, size_t offset, uint8_t value) {
    image[len - SIM_IMAGE_DIGEST_SIZE_BYTES - 1] ^= (uint8_t)(image[offset] ^ value);
    image[offset] = value;
    sim_sha256_t sha;
    sim_sha256_init(&sha);
    sim_sha256_update(&sha, image, len - SIM_IMAGE_DIGEST_SIZE_BYTES);
    sim_sha256_finish(&sha, image + len - SIM_IMAGE_DIGEST_SIZE_BYTES);
}

/* esp_app_desc_t.min/max_efuse_blk_rev_full against the virtual chip's block revision v0.0. */
static void test_efuse_block_revision(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *image = t_fixture("app_v1.bin", &len);
    const size_t min_blk = SIM_APP_DESC_OFFSET_BYTES + 176; /* min_efuse_blk_rev_full, u16 */
    patch_sealed(image, len, min_blk, 100);                 /* v1.0 */
    sim_flash_t *flash = t_flash_new(NULL);
    assert_int_equal(sim_flash_write(flash, T_OTA0_OFFSET, image, len), SIM_FLASH_OK);
    char why[160];
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, why, sizeof(why)),
                     SIM_IMAGE_ERR_EFUSE_BLK_REVISION);
    assert_string_equal(why, "Image requires efuse blk rev >= v1.0, but chip is v0.0");
    /* Back to 0 ("not set"): the same bytes as the fixture, valid again. */
    patch_sealed(image, len, min_blk, 0);
    assert_int_equal(sim_flash_erase_range(flash, T_OTA0_OFFSET, 0x12000), SIM_FLASH_OK);
    assert_int_equal(sim_flash_write(flash, T_OTA0_OFFSET, image, len), SIM_FLASH_OK);
    assert_int_equal(verify(flash, T_SLOT_SIZE, 0, NULL, NULL, 0), SIM_IMAGE_OK);
    free(image);
    t_flash_free(flash);
}

static void test_mapped_segment_alignment(void **state) {
    (void)state;
    /* The same image one word further into flash: DROM/IROM no longer line up with the MMU pages.
     */
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET + 4, "app_v1.bin");
    char why[160];
    assert_int_equal(
        sim_image_verify(flash, T_OTA0_OFFSET + 4, T_SLOT_SIZE, 0, NULL, why, sizeof(why)),
        SIM_IMAGE_ERR_SEGMENT_MAPPING);
    assert_non_null(strstr(why, "doesn't match data"));
    t_flash_free(flash);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_image_and_app_desc),
        cmocka_unit_test(test_behaviour_markers),
        cmocka_unit_test(test_flipped_data_bit_fails_checksum),
        cmocka_unit_test(test_flipped_digest_bit_fails_hash),
        cmocka_unit_test(test_truncated_image_fails),
        cmocka_unit_test(test_image_larger_than_partition),
        cmocka_unit_test(test_chip_id_and_revision),
        cmocka_unit_test(test_header_fields_checked),
        cmocka_unit_test(test_efuse_block_revision),
        cmocka_unit_test(test_mapped_segment_alignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
