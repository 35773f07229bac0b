/*
 * test_ota_port_espidf_slots.c — the ESP-IDF port's OTA slot functions (ota_port.h over
 * ota_port_espidf_slots.c) on the virtual ESP32-S3: the port, unchanged, over the host
 * ESP-IDF layer (firmware/sim/idf) and the flash model (firmware/sim/flash). The test is
 * the app the virtual board boots (sim_board_run): a fresh 4 MiB flash with the shipped
 * 4MB partition table and app_v1 in ota_0, so ota_0 runs and ota_1 is the update slot.
 * Error paths use only real behaviours of the model and its fault knob
 * (sim_flash_set_fail_ops: flash operations that fail), never a faked ESP-IDF call.
 * The tests share the board and run in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "esp_err.h"
#include "esp_ota_ops.h"
#include "ota_port.h"
#include "ota_port_espidf_priv.h"
#include "sim_board.h"
#include "sim_flash.h"
#include "sim_partition_table.h"

#define SLOT_SIZE_BYTES 0x140000u /* ota_0 and ota_1 of the shipped 4MB layout */
#define ESP32S3_CHIP_ID 9u

static char s_flash_path[128];
static char s_config_path[128];
static uint8_t *s_v2;
static size_t s_v2_len;

static uint8_t *read_fixture(const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fixture %s missing\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read fixture %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* Flash operations from the next one on fail (count 0: none fail). */
static void fail_next_flash_ops(uint64_t count) {
    sim_flash_t *flash = sim_board_flash();
    sim_flash_set_fail_ops(flash, sim_flash_op_count(flash) + 1, count);
}

/* Writes image[0..len) through the port in pieces of `chunk` bytes. */
static ota_status_t write_in_chunks(ota_port_update_t *update, const uint8_t *image, size_t len,
                                    size_t chunk) {
    for (size_t at = 0; at < len; at += chunk) {
        size_t n = len - at < chunk ? len - at : chunk;
        ota_status_t status = ota_port_update_write(update, image + at, n);
        if (status != OTA_OK) {
            return status;
        }
    }
    return OTA_OK;
}

static void test_status_from_esp_err(void **state) {
    (void)state;
    static const struct {
        esp_err_t err;
        ota_status_t status;
    } cases[] = {
        {ESP_OK, OTA_OK},
        {ESP_ERR_NO_MEM, OTA_ERR_NO_MEM},
        {ESP_ERR_INVALID_ARG, OTA_ERR_INVALID_ARG},
        {ESP_ERR_NOT_FOUND, OTA_ERR_NOT_FOUND},
        {ESP_ERR_TIMEOUT, OTA_ERR_TIMEOUT},
        {ESP_ERR_NOT_SUPPORTED, OTA_ERR_NOT_SUPPORTED},
        {ESP_ERR_OTA_ROLLBACK_INVALID_STATE, OTA_ERR_PENDING_VERIFY},
        {ESP_ERR_OTA_ALREADY_IN_PROGRESS, OTA_ERR_BUSY},
        {ESP_ERR_OTA_VALIDATE_FAILED, OTA_ERR_IMAGE_INVALID},
        {ESP_ERR_OTA_ROLLBACK_FAILED, OTA_ERR_ROLLBACK_FAILED},
        {ESP_ERR_OTA_SMALL_SEC_VER, OTA_ERR_SECURE_VERSION},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ota_port_espidf_status_from_esp_err(cases[i].err, OTA_ERR_FAIL),
                         cases[i].status);
    }
    /* Anything else is the caller's fallback. */
    assert_int_equal(ota_port_espidf_status_from_esp_err(ESP_FAIL, OTA_ERR_FLASH_READ),
                     OTA_ERR_FLASH_READ);
    assert_int_equal(ota_port_espidf_status_from_esp_err(ESP_ERR_INVALID_SIZE, OTA_ERR_SET_BOOT),
                     OTA_ERR_SET_BOOT);
}

static void test_slot_queries(void **state) {
    (void)state;
    assert_int_equal(ota_port_running_slot(), 0);
    assert_int_equal(ota_port_boot_slot(), 0); /* empty otadata: the first OTA slot */
    assert_int_equal(ota_port_next_update_slot(), 1);
    assert_int_equal(ota_port_last_invalid_slot(), OTA_SLOT_NONE);
    assert_false(ota_port_rollback_possible());

    uint32_t size = 0;
    assert_int_equal(ota_port_slot_size(1, &size), OTA_OK);
    assert_int_equal(size, SLOT_SIZE_BYTES);
    assert_int_equal(ota_port_slot_size(2, &size), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_slot_size(-1, &size), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_slot_size(0, NULL), OTA_ERR_INVALID_ARG);

    /* The bootloader's initial otadata write (no factory app): ota_0 VALID, no entry names
     * ota_1. */
    ota_img_state_t img_state = OTA_IMG_UNDEFINED;
    assert_int_equal(ota_port_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_VALID);
    assert_int_equal(ota_port_slot_state(1, &img_state), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_slot_state(5, &img_state), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_slot_state(0, NULL), OTA_ERR_INVALID_ARG);

    ota_app_desc_t desc;
    memset(&desc, 0xAA, sizeof(desc));
    assert_int_equal(ota_port_slot_app_desc(0, &desc), OTA_OK);
    assert_string_equal(desc.version, "1.0.0");
    assert_int_equal(ota_port_slot_app_desc(1, &desc), OTA_ERR_NOT_FOUND); /* erased slot */
    assert_int_equal(ota_port_slot_app_desc(3, &desc), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_slot_app_desc(0, NULL), OTA_ERR_INVALID_ARG);

    uint8_t buf[8] = {0};
    assert_int_equal(ota_port_slot_read(0, 0, buf, sizeof(buf)), OTA_OK);
    assert_int_equal(buf[0], 0xE9); /* image magic */
    /* Beyond the partition: esp_partition_read's ESP_ERR_INVALID_SIZE. */
    assert_int_equal(ota_port_slot_read(0, SLOT_SIZE_BYTES - 4, buf, sizeof(buf)),
                     OTA_ERR_FLASH_READ);
    assert_int_equal(ota_port_slot_read(0, 0, NULL, 4), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_slot_read(7, 0, buf, 4), OTA_ERR_NOT_FOUND);

    uint16_t chip_id = 0, rev = 0xFFFF;
    ota_port_chip_info(&chip_id, &rev);
    assert_int_equal(chip_id, ESP32S3_CHIP_ID);
    assert_int_equal(rev, 0); /* the board's default --chip-rev-full */
    ota_port_chip_info(NULL, NULL);
}

static void test_otadata_errors(void **state) {
    (void)state;
    /* No other bootable app: nothing is written and the call returns. */
    assert_int_equal(ota_port_mark_invalid_and_reboot(), OTA_ERR_ROLLBACK_FAILED);

    assert_int_equal(ota_port_set_boot_slot(4), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_set_boot_slot(-1), OTA_ERR_NOT_FOUND);
    assert_int_equal(ota_port_set_boot_slot(1), OTA_ERR_IMAGE_INVALID); /* erased slot */

    fail_next_flash_ops(100); /* the otadata write fails */
    assert_int_equal(ota_port_set_boot_slot(0), OTA_ERR_SET_BOOT);
    fail_next_flash_ops(0);
    assert_int_equal(ota_port_boot_slot(), 0);
    ota_img_state_t img_state = OTA_IMG_UNDEFINED;
    assert_int_equal(ota_port_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_VALID); /* nothing written */

    /* Rule 9: setting the running slot rewrites its entry NEW. */

    assert_int_equal(ota_port_set_boot_slot(0), OTA_OK);
    assert_int_equal(ota_port_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_NEW);

    fail_next_flash_ops(100);
    assert_int_equal(ota_port_mark_valid(), OTA_ERR_FLASH_WRITE);
    fail_next_flash_ops(0);
    assert_int_equal(ota_port_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_NEW);
    assert_int_equal(ota_port_mark_valid(), OTA_OK);
    assert_int_equal(ota_port_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_VALID);
    fail_next_flash_ops(100); /* already valid: nothing to write */
    assert_int_equal(ota_port_mark_valid(), OTA_OK);
    fail_next_flash_ops(0);

    /* Still no other bootable app. */
    assert_int_equal(ota_port_mark_invalid_and_reboot(), OTA_ERR_ROLLBACK_FAILED);
    assert_int_equal(ota_port_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_VALID);
}

static void test_update_begin_errors(void **state) {
    (void)state;
    ota_port_update_t *update = NULL;
    assert_int_equal(ota_port_update_begin(2, 1024, &update), OTA_ERR_NO_UPDATE_SLOT);
    assert_int_equal(ota_port_update_begin(-1, 1024, &update), OTA_ERR_NO_UPDATE_SLOT);
    assert_int_equal(ota_port_update_begin(1, 1024, NULL), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_begin(1, 0, &update), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_begin(1, SLOT_SIZE_BYTES + 1, &update),
                     OTA_ERR_IMAGE_TOO_LARGE);
    /* The running slot: ESP_ERR_OTA_PARTITION_CONFLICT. */
    assert_int_equal(ota_port_update_begin(0, 1024, &update), OTA_ERR_FLASH_ERASE);
    assert_null(update);

    fail_next_flash_ops(1000); /* the erase fails */
    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &update), OTA_ERR_FLASH_ERASE);
    fail_next_flash_ops(0);
    assert_null(update);

    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &update), OTA_OK);
    assert_non_null(update);
    ota_port_update_t *second = NULL;
    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &second), OTA_ERR_BUSY);
    assert_null(second);
    ota_port_update_abort(update);
    ota_port_update_abort(NULL);
    /* The abort released the slot. */
    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &second), OTA_OK);
    ota_port_update_abort(second);
}

static void test_update_write_errors(void **state) {
    (void)state;
    ota_port_update_t *update = NULL;
    assert_int_equal(ota_port_update_write(NULL, s_v2, 16), OTA_ERR_INVALID_ARG);

    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &update), OTA_OK);
    assert_int_equal(ota_port_update_write(update, NULL, 16), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_write(update, NULL, 0), OTA_ERR_INVALID_ARG);
    static const uint8_t not_an_image[16] = {0x7F, 'E', 'L', 'F'};
    assert_int_equal(ota_port_update_write(update, not_an_image, sizeof(not_an_image)),
                     OTA_ERR_IMAGE_HEADER);
    /* Nothing written: esp_ota_end's ESP_ERR_INVALID_ARG; the update is freed. */
    assert_int_equal(ota_port_update_end(update), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_end(NULL), OTA_ERR_INVALID_ARG);

    /* A flash write that fails. */
    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &update), OTA_OK);
    fail_next_flash_ops(1000);
    assert_int_equal(ota_port_update_write(update, s_v2, 4096), OTA_ERR_FLASH_WRITE);
    fail_next_flash_ops(0);
    ota_port_update_abort(update);

    /* Beyond the partition: esp_ota_write's ESP_ERR_INVALID_SIZE, nothing programmed. */
    assert_int_equal(ota_port_update_begin(1, SLOT_SIZE_BYTES, &update), OTA_OK);
    uint8_t *big = malloc(SLOT_SIZE_BYTES + 16);
    assert_non_null(big);
    memset(big, 0xFF, SLOT_SIZE_BYTES + 16);
    memcpy(big, s_v2, 64);
    assert_int_equal(ota_port_update_write(update, big, SLOT_SIZE_BYTES + 16), OTA_ERR_FLASH_WRITE);
    free(big);
    ota_port_update_abort(update);

    /* A short image (half of it, odd-sized writes): the end's verification fails. */
    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &update), OTA_OK);
    assert_int_equal(write_in_chunks(update, s_v2, s_v2_len / 2, 1001), OTA_OK);
    assert_int_equal(ota_port_update_end(update), OTA_ERR_IMAGE_INVALID);

    /* A whole image with one byte changed: its SHA-256 no longer matches. */
    uint8_t *bad = malloc(s_v2_len);
    assert_non_null(bad);
    memcpy(bad, s_v2, s_v2_len);
    bad[s_v2_len / 2] ^= 0x01;
    assert_int_equal(ota_port_update_begin(1, (uint32_t)s_v2_len, &update), OTA_OK);
    assert_int_equal(write_in_chunks(update, bad, s_v2_len, 4096), OTA_OK);
    assert_int_equal(ota_port_update_end(update), OTA_ERR_IMAGE_INVALID);
    free(bad);
    assert_int_equal(ota_port_set_boot_slot(1), OTA_ERR_IMAGE_INVALID);
    assert_int_equal(ota_port_boot_slot(), 0);
}

static void test_update_resume_and_install(void **state) {
    (void)state;
    ota_port_update_t *update = NULL;
    uint32_t len = (uint32_t)s_v2_len;
    assert_int_equal(ota_port_update_resume(1, len, len + 1, &update), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_resume(6, len, 0, &update), OTA_ERR_NO_UPDATE_SLOT);
    assert_int_equal(ota_port_update_resume(1, 0, 0, &update), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_resume(1, len, 0, NULL), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_port_update_resume(1, SLOT_SIZE_BYTES + 16, 0, &update),
                     OTA_ERR_IMAGE_TOO_LARGE);
    /* The running slot: ESP_ERR_OTA_PARTITION_CONFLICT. */
    assert_int_equal(ota_port_update_resume(0, len, 0, &update), OTA_ERR_FAIL);
    assert_null(update);

    /* A download interrupted at an odd offset (unaligned writes), then resumed there. */
    uint32_t cut = len / 3 + 3;
    assert_int_equal(ota_port_update_begin(1, len, &update), OTA_OK);
    assert_int_equal(write_in_chunks(update, s_v2, cut, 777), OTA_OK);
    ota_port_update_abort(update);
    update = NULL;
    assert_int_equal(ota_port_update_resume(1, len, cut, &update), OTA_OK);
    assert_non_null(update);
    ota_port_update_t *second = NULL;
    assert_int_equal(ota_port_update_resume(1, len, cut, &second), OTA_ERR_BUSY);
    assert_int_equal(write_in_chunks(update, s_v2 + cut, len - cut, 1500), OTA_OK);
    assert_int_equal(ota_port_update_end(update), OTA_OK);

    ota_app_desc_t desc;
    assert_int_equal(ota_port_slot_app_desc(1, &desc), OTA_OK);
    assert_string_equal(desc.version, "2.0.0");
    uint8_t head[32];
    assert_int_equal(ota_port_slot_read(1, 0, head, sizeof(head)), OTA_OK);
    assert_memory_equal(head, s_v2, sizeof(head));

    assert_int_equal(ota_port_set_boot_slot(1), OTA_OK);
    assert_int_equal(ota_port_boot_slot(), 1);
    assert_int_equal(ota_port_running_slot(), 0);
    ota_img_state_t img_state = OTA_IMG_UNDEFINED;
    assert_int_equal(ota_port_slot_state(1, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_NEW);
    assert_true(ota_port_rollback_possible());
    assert_int_equal(ota_port_last_invalid_slot(), OTA_SLOT_NONE);
}

static void test_app(void) {
    s_v2 = read_fixture("app_v2.bin", &s_v2_len);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_from_esp_err),
        cmocka_unit_test(test_slot_queries),
        cmocka_unit_test(test_otadata_errors),
        cmocka_unit_test(test_update_begin_errors),
        cmocka_unit_test(test_update_write_errors),
        cmocka_unit_test(test_update_resume_and_install),
    };
    int failures = cmocka_run_group_tests(tests, NULL, NULL);
    free(s_v2);
    unlink(s_flash_path);
    unlink(s_config_path);
    sim_board_power_off(failures == 0 ? 0 : 1); /* writes the gcov counts in coverage builds */
}

int main(void) {
    snprintf(s_flash_path, sizeof(s_flash_path), "/tmp/ota-port-slots-%ld.bin", (long)getpid());
    snprintf(s_config_path, sizeof(s_config_path), "/tmp/ota-port-slots-%ld.cfg", (long)getpid());
    sim_flash_t *flash = NULL;
    size_t len = 0;
    if (sim_flash_create(s_flash_path, 4u << 20, &flash) != SIM_FLASH_OK) {
        fprintf(stderr, "cannot create %s\n", s_flash_path);
        return 1;
    }
    uint8_t *table = read_fixture("partitions_4MB.bin", &len);
    uint8_t *v1 = NULL;
    int ok = sim_flash_write(flash, SIM_PARTITION_TABLE_OFFSET, table, len) == SIM_FLASH_OK;
    free(table);
    v1 = read_fixture("app_v1.bin", &len);
    ok = ok && len % 4 == 0 && sim_flash_write(flash, 0x20000u, v1, len) == SIM_FLASH_OK;
    free(v1);
    sim_flash_close(flash);
    FILE *config = fopen(s_config_path, "w");
    ok = ok && config != NULL && fputs("# defaults\n", config) >= 0;
    if (config != NULL) {
        fclose(config);
    }
    if (!ok) {
        fprintf(stderr, "cannot write the test flash\n");
        return 1;
    }
    char *argv[] = {
        "test_ota_port_espidf_slots", "--flash", s_flash_path, "--config", s_config_path, NULL};
    return sim_board_run(5, argv, test_app);
}
