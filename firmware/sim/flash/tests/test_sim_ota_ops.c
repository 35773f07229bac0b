/* test_sim_ota_ops.c — the esp_ota_ops emulation: rules 7–16, traps included, and image writing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ota_port.h"
#include "sim_ota_ops.h"
#include "sim_test_support.h"

static void assert_entry(const sim_otadata_entry_t *entry, uint32_t seq, uint32_t state) {
    assert_int_equal(entry->ota_seq, seq);
    assert_int_equal(entry->ota_state, state);
    assert_true(sim_otadata_crc_ok(entry));
}

static bool entry_erased(const sim_otadata_entry_t *entry) {
    const uint8_t *bytes = (const uint8_t *)entry;
    for (size_t i = 0; i < sizeof(*entry); i++) {
        if (bytes[i] != 0xFF) {
            return false;
        }
    }
    return true;
}

/* v1 in ota_0, v2 in ota_1, otadata entries as given (NULL: erased). */
static sim_flash_t *setup(const sim_otadata_entry_t *e0, const sim_otadata_entry_t *e1,
                          bool rollback) {
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    t_put_image(flash, T_OTA1_OFFSET, "app_v2.bin");
    if (e0 != NULL) {
        t_put_otadata(flash, T_OTADATA_OFFSET, 0, e0);
    }
    if (e1 != NULL) {
        t_put_otadata(flash, T_OTADATA_OFFSET, 1, e1);
    }
    t_device_init(flash, rollback);
    return flash;
}

/* Writes a fixture through the update API in awkward chunk sizes. */
static ota_status_t write_image(int slot, const char *fixture) {
    size_t len = 0;
    uint8_t *image = t_fixture(fixture, &len);
    sim_ota_update_t *update = NULL;
    ota_status_t status = sim_ota_update_begin(slot, (uint32_t)len, &update);
    if (status != OTA_OK) {
        free(image);
        return status;
    }
    static const size_t CHUNKS[] = {1, 3, 4093, 4096, 7, 1000};
    size_t done = 0;
    for (int i = 0; done < len; i++) {
        size_t n = CHUNKS[i % 6];
        if (n > len - done) {
            n = len - done;
        }
        status = sim_ota_update_write(update, image + done, n);
        if (status != OTA_OK) {
            sim_ota_update_abort(update);
            free(image);
            return status;
        }
        done += n;
    }
    free(image);
    return sim_ota_update_end(update);
}

static void read_entries(sim_flash_t *flash, sim_otadata_entry_t e[2]) {
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
}

/* A whole update the way the core does it: v1 → v2, confirmed. */
static void test_full_update_cycle(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_ota_running_slot(), 0);
    assert_int_equal(sim_ota_boot_slot(), 0);
    assert_int_equal(sim_ota_next_update_slot(), 1);
    uint32_t size = 0;
    assert_int_equal(sim_ota_slot_size(1, &size), OTA_OK);
    assert_int_equal(size, T_SLOT_SIZE);
    ota_img_state_t img_state;
    assert_int_equal(sim_ota_slot_state(0, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_VALID);
    assert_int_equal(sim_ota_slot_state(1, &img_state), OTA_ERR_NOT_FOUND);

    assert_int_equal(write_image(1, "app_v2.bin"), OTA_OK);
    ota_app_desc_t desc;
    assert_int_equal(sim_ota_slot_app_desc(1, &desc), OTA_OK);
    assert_string_equal(desc.version, "2.0.0");
    uint8_t head[4];
    assert_int_equal(sim_ota_slot_read(1, 0, head, 4), OTA_OK);
    assert_int_equal(head[0], 0xE9);
    assert_int_equal(sim_ota_set_boot_slot(1), OTA_OK);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_NEW);
    assert_int_equal(sim_ota_boot_slot(), 1);

    sim_boot_result_t boot;
    assert_int_equal(t_boot(&boot), 1);
    assert_string_equal(boot.image.app_desc.version, "2.0.0");
    assert_int_equal(sim_ota_slot_state(1, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_PENDING_VERIFY);
    assert_true(sim_ota_rollback_possible());
    assert_int_equal(sim_ota_mark_valid(), OTA_OK);
    read_entries(flash, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_VALID);
    assert_int_equal(t_boot(NULL), 1);
    t_flash_free(flash);
}

/* Rule 7: mark-valid acts on the ACTIVE entry. After a fallback boot into ota_0 while the active
 * entry names the broken ota_1, mark-valid marks ota_1 VALID and every later boot tries ota_1
 * first. */
static void test_rule7_mark_valid_after_fallback_marks_broken_slot(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_NEW);
    sim_flash_t *flash = setup(&e0, &e1, true);
    t_flip_bit(flash, T_OTA1_OFFSET + 40000);
    sim_boot_result_t boot;
    assert_int_equal(t_boot(&boot), 0);
    assert_true(boot.fell_back);
    /* What the client must check before confirming: */
    assert_int_equal(sim_ota_running_slot(), 0);
    assert_int_equal(sim_ota_boot_slot(), 1);
    /* The trap, as ESP-IDF has it: */
    assert_int_equal(sim_ota_mark_valid(), OTA_OK);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_VALID);
    t_log_clear();
    assert_int_equal(t_boot(&boot), 0);
    assert_int_equal(boot.selected_index, 1);
    assert_true(t_log_contains("OTA app partition slot 1 is not bootable"));
    t_flash_free(flash);
}

/* Rule 7, mark-invalid half: from a fallback boot it marks the active (broken) entry, not the
 * running app. */
static void test_rule7_mark_invalid_acts_on_active_entry(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_VALID);
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 1);
    t_reboot_count = 0;
    t_reboot_armed = true;
    if (setjmp(t_reboot_jump) == 0) {
        sim_ota_mark_invalid_and_reboot();
        fail_msg("mark_invalid_and_reboot returned instead of rebooting");
    }
    assert_int_equal(t_reboot_count, 1);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_INVALID);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_ota_last_invalid_slot(), 1);
    t_flash_free(flash);
}

/* Rule 8: the state of a slot comes from the first CRC-valid entry naming it (sector 0 first), so
 * an older VALID entry hides the running app's PENDING_VERIFY and esp_ota_begin's refusal is
 * missed. */
static void test_rule8_state_from_first_matching_entry(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(2, SIM_OTA_STATE_VALID); /* slot 1, older */
    sim_otadata_entry_t e1 = sim_otadata_make(4, SIM_OTA_STATE_NEW);   /* slot 1, active */
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 1);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[1], 4, SIM_OTA_STATE_PENDING_VERIFY);
    ota_img_state_t img_state;
    assert_int_equal(sim_ota_slot_state(1, &img_state), OTA_OK);
    assert_int_equal(img_state, OTA_IMG_VALID);
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(0, 70000, &update), OTA_OK); /* not refused */
    sim_ota_update_abort(update);
    t_flash_free(flash);
}

/* Rule 8's intended case: a running PENDING_VERIFY app refuses esp_ota_begin. */
static void test_begin_refused_while_pending_verify(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_NEW);
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 1);
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(0, 70000, &update), OTA_ERR_PENDING_VERIFY);
    assert_int_equal(sim_ota_update_resume(0, 70000, 100, &update), OTA_ERR_PENDING_VERIFY);
    assert_true(t_log_contains("Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)"));
    assert_int_equal(sim_ota_update_open_count(), 0);
    t_flash_free(flash);
}

/* Rule 9: set_boot(running slot) rewrites its entry NEW; unconfirmed, the boot after rolls back. */
static void test_rule9_set_boot_running_slot_rewrites_new(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_VALID);
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 1);
    assert_int_equal(sim_ota_set_boot_slot(1), OTA_OK);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_NEW);
    assert_entry(&e[0], 1, SIM_OTA_STATE_VALID);
    assert_int_equal(t_boot(NULL), 1); /* NEW → PENDING_VERIFY */
    assert_int_equal(t_boot(NULL), 0); /* not confirmed: ABORTED, back to ota_0 */
    read_entries(flash, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_ABORTED);
    t_flash_free(flash);
}

/* Rule 10: set_boot(factory) erases the whole otadata partition. */
static void test_rule10_set_boot_factory_erases_otadata(void **state) {
    (void)state;
    const t_part_t parts[] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, 0xd000, 0x2000},
        {"factory", SIM_PART_TYPE_APP, SIM_PART_SUBTYPE_FACTORY, 0x10000, 0x100000},
        {"ota_0", SIM_PART_TYPE_APP, 0x10, 0x110000, 0x100000},
        {"ota_1", SIM_PART_TYPE_APP, 0x11, 0x210000, 0x100000},
    };
    uint8_t table[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    t_build_table(parts, 4, true, table);
    sim_flash_t *flash = t_flash_new(table);
    t_put_image(flash, 0x10000, "app_v1.bin");
    t_put_image(flash, 0x110000, "app_v2.bin");
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    t_put_otadata(flash, 0xd000, 0, &e0);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_ota_set_boot_slot(OTA_SLOT_NONE), OTA_OK);
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, 0xd000, e);
    assert_true(entry_erased(&e[0]));
    assert_true(entry_erased(&e[1]));
    sim_boot_result_t boot;
    t_boot(&boot);
    assert_int_equal(boot.boot_index, SIM_BOOT_INDEX_FACTORY);
    t_flash_free(flash);
}

/* Rule 11: esp_ota_begin erases the inactive otadata sector when it is CRC-valid and names another
 * slot. */
static void test_rule11_begin_erases_inactive_entry(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID); /* ota_0, inactive */
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_VALID); /* ota_1, active, running */
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 1);
    assert_true(sim_ota_rollback_possible());
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(0, 70000, &update), OTA_OK);
    sim_ota_update_abort(update);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_true(entry_erased(&e[0])); /* the rollback record is gone */
    assert_entry(&e[1], 2, SIM_OTA_STATE_VALID);
    assert_false(sim_ota_rollback_possible());
    t_flash_free(flash);
}

/* Rule 11: not erased when the inactive entry names the running slot. */
static void test_rule11_inactive_naming_running_slot_kept(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID); /* ota_0 */
    sim_otadata_entry_t e1 = sim_otadata_make(3, SIM_OTA_STATE_VALID); /* ota_0 too */
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 0);
    uint64_t ops = sim_flash_op_count(flash);
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(1, 4096, &update), OTA_OK);
    sim_ota_update_abort(update);
    assert_int_equal(sim_flash_op_count(flash), ops + 1); /* only the one image sector */
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[0], 1, SIM_OTA_STATE_VALID);
    t_flash_free(flash);
}

/* Rule 12: near 0xFFFFFFFF the next seq can be 0xFFFFFFFF — written with a correct CRC, OK
 * returned, and the switch never happens. */
static void test_rule12_seq_wraparound_to_unusable_entry(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(0xFFFFFFFEu, SIM_OTA_STATE_VALID); /* slot 1 */
    sim_flash_t *flash = setup(&e0, NULL, true);
    assert_int_equal(t_boot(NULL), 1);
    assert_int_equal(sim_ota_set_boot_slot(0), OTA_OK);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[1], 0xFFFFFFFFu, SIM_OTA_STATE_NEW);
    assert_int_equal(t_boot(NULL), 1); /* still ota_1 */
    t_flash_free(flash);
}

/* Rule 12: with 4 slots some targets have no seq at all above the current one; ESP-IDF's loop would
 * never end — the model refuses and writes nothing. */
static void test_rule12_no_seq_reachable_does_not_hang(void **state) {
    (void)state;
    t_part_t parts[5] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, 0xd000, 0x2000}};
    static const char *labels[] = {"ota_0", "ota_1", "ota_2", "ota_3"};
    for (int i = 0; i < 4; i++) {
        parts[i + 1] = (t_part_t){labels[i], SIM_PART_TYPE_APP, (uint8_t)(0x10 + i),
                                  0x10000 + (uint32_t)i * 0x40000, 0x40000};
    }
    uint8_t table[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    t_build_table(parts, 5, true, table);
    sim_flash_t *flash = t_flash_new(table);
    for (int i = 0; i < 4; i++) {
        t_put_image(flash, 0x10000 + (uint32_t)i * 0x40000, "app_v1.bin");
    }
    sim_otadata_entry_t e0 =
        sim_otadata_make(0xFFFFFFFEu, SIM_OTA_STATE_VALID); /* 0xFFFFFFFD % 4 = 1 */
    t_put_otadata(flash, 0xd000, 0, &e0);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 1);
    uint64_t ops = sim_flash_op_count(flash);
    assert_int_equal(sim_ota_set_boot_slot(0),
                     OTA_ERR_SET_BOOT); /* needs seq ≡ 1 mod 4 ≥ 0xFFFFFFFE */
    assert_int_equal(sim_flash_op_count(flash), ops);
    assert_int_equal(sim_ota_set_boot_slot(2), OTA_OK); /* 0xFFFFFFFF ≡ 3 mod 4 → slot 2 */
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, 0xd000, e);
    assert_entry(&e[1], 0xFFFFFFFFu, SIM_OTA_STATE_NEW);
    t_flash_free(flash);
}

/* Rule 13: mark-invalid with nothing else usable and no factory → ROLLBACK_FAILED, nothing written.
 */
static void test_rule13_mark_invalid_without_fallback_fails(void **state) {
    (void)state;
    sim_flash_t *flash = setup(NULL, NULL, true);
    assert_int_equal(t_boot(NULL), 0); /* first boot: seq 1 VALID */
    assert_false(sim_ota_rollback_possible());
    uint64_t ops = sim_flash_op_count(flash);
    t_reboot_count = 0;
    assert_int_equal(sim_ota_mark_invalid_and_reboot(), OTA_ERR_ROLLBACK_FAILED);
    assert_int_equal(t_reboot_count, 0);
    assert_int_equal(sim_flash_op_count(flash), ops);
    assert_true(t_log_contains("Rollback is not possible, do not have any suitable apps in slots"));
    t_flash_free(flash);
}

/* Rule 15: the last invalid slot is the invalid/aborted entry with the LOWER seq. */
static void test_rule15_last_invalid_lower_seq(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(4, SIM_OTA_STATE_ABORTED); /* slot 1 */
    sim_otadata_entry_t e1 = sim_otadata_make(3, SIM_OTA_STATE_INVALID); /* slot 0, lower seq */
    sim_flash_t *flash = setup(&e0, &e1, true);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_ota_last_invalid_slot(), 0);
    /* A corrupted image there: none. */
    t_flip_bit(flash, T_OTA0_OFFSET + 40000);
    assert_int_equal(sim_ota_last_invalid_slot(), OTA_SLOT_NONE);
    t_flash_free(flash);
}

/* Rule 16: without rollback set_boot writes UNDEFINED, and begin neither refuses nor erases
 * otadata. */
static void test_rule16_rollback_disabled(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_PENDING_VERIFY);
    sim_flash_t *flash = setup(&e0, &e1, false);
    assert_int_equal(t_boot(NULL), 1);
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(0, 4096, &update),
                     OTA_OK); /* PENDING_VERIFY not checked */
    sim_ota_update_abort(update);
    sim_otadata_entry_t e[2];
    read_entries(flash, e);
    assert_entry(&e[0], 1, SIM_OTA_STATE_VALID); /* inactive entry kept */
    assert_int_equal(write_image(0, "app_v3.bin"), OTA_OK);
    assert_int_equal(sim_ota_set_boot_slot(0), OTA_OK);
    read_entries(flash, e);
    assert_entry(&e[0], 3, SIM_OTA_STATE_UNDEFINED);
    sim_boot_result_t boot;
    assert_int_equal(t_boot(&boot), 0);
    assert_string_equal(boot.image.app_desc.version, "3.0.0");
    t_flash_free(flash);
}

/* Rule 17 (app half): the app counts 1 slot for ota_0 + ota_2, so ota_2 cannot be set as boot slot.
 */
static void test_rule17_gap_slot_refused_by_app(void **state) {
    (void)state;
    const t_part_t parts[] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, 0xd000, 0x2000},
        {"ota_0", SIM_PART_TYPE_APP, 0x10, 0x10000, 0x100000},
        {"ota_2", SIM_PART_TYPE_APP, 0x12, 0x110000, 0x100000},
    };
    uint8_t table[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    t_build_table(parts, 3, true, table);
    sim_flash_t *flash = t_flash_new(table);
    t_put_image(flash, 0x10000, "app_v1.bin");
    t_put_image(flash, 0x110000, "app_v2.bin");
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_ota_next_update_slot(), 2);
    assert_int_equal(sim_ota_set_boot_slot(2), OTA_ERR_INVALID_ARG);
    t_flash_free(flash);
}

static void test_update_refusals(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_flash_t *flash = setup(&e0, NULL, true);
    assert_int_equal(t_boot(NULL), 0);
    sim_ota_update_t *update = NULL;
    sim_ota_update_t *second = NULL;
    assert_int_equal(sim_ota_update_begin(0, 4096, &update), OTA_ERR_BUSY);      /* running slot */
    assert_int_equal(sim_ota_update_begin(5, 4096, &update), OTA_ERR_NOT_FOUND); /* no ota_5 */
    assert_int_equal(sim_ota_update_begin(1, T_SLOT_SIZE + 1, &update), OTA_ERR_IMAGE_TOO_LARGE);
    assert_int_equal(sim_ota_update_begin(1, 8192, &update), OTA_OK);
    assert_int_equal(sim_ota_update_begin(1, 8192, &second), OTA_ERR_BUSY); /* in progress */
    uint8_t not_an_image[4] = {0x00, 1, 2, 3};
    assert_int_equal(sim_ota_update_write(update, not_an_image, 4), OTA_ERR_IMAGE_INVALID);
    assert_int_equal(sim_ota_update_end(update), OTA_ERR_INVALID_ARG); /* nothing written */
    assert_int_equal(sim_ota_update_open_count(), 0);
    /* The handle is gone, as an ESP-IDF handle is after esp_ota_end. */
    assert_int_equal(sim_ota_update_write(update, not_an_image, 4), OTA_ERR_INVALID_ARG);
    assert_int_equal(sim_ota_update_end(update), OTA_ERR_INVALID_ARG);
    /* Writing past the end of the slot. */
    assert_int_equal(sim_ota_update_resume(1, T_SLOT_SIZE, T_SLOT_SIZE - 4, &update), OTA_OK);
    uint8_t eight[8];
    memset(eight, 0, sizeof(eight));
    assert_int_equal(sim_ota_update_write(update, eight, 8), OTA_ERR_IMAGE_TOO_LARGE);
    sim_ota_update_abort(update);
    assert_int_equal(sim_ota_update_resume(1, T_SLOT_SIZE + 4, 0, &update),
                     OTA_ERR_IMAGE_TOO_LARGE);
    assert_int_equal(sim_ota_update_resume(1, 100, 200, &update), OTA_ERR_INVALID_ARG);
    assert_int_equal(sim_ota_slot_read(1, T_SLOT_SIZE - 2, eight, 4), OTA_ERR_INVALID_ARG);
    t_flash_free(flash);
}

static void test_corrupt_image_rejected_by_end(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_flash_t *flash = setup(&e0, NULL, true);
    assert_int_equal(t_boot(NULL), 0);
    size_t len = 0;
    uint8_t *image = t_fixture("app_v2.bin", &len);
    image[40000] ^= 0x10;
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(1, (uint32_t)len, &update), OTA_OK);
    assert_int_equal(sim_ota_update_write(update, image, len), OTA_OK);
    assert_int_equal(sim_ota_update_end(update), OTA_ERR_IMAGE_INVALID);
    assert_true(t_log_contains("E esp_ota_ops: New image failed verification"));
    assert_int_equal(sim_ota_set_boot_slot(1), OTA_ERR_IMAGE_INVALID);
    free(image);
    t_flash_free(flash);
}

/* Resume at an unaligned byte offset (the partial word is read back from flash). */
static void test_resume_at_odd_offset(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_flash_t *flash = setup(&e0, NULL, true);
    assert_int_equal(t_boot(NULL), 0);
    size_t len = 0;
    uint8_t *image = t_fixture("app_v3.bin", &len);
    sim_ota_update_t *update = NULL;
    assert_int_equal(sim_ota_update_begin(1, (uint32_t)len, &update), OTA_OK);
    assert_int_equal(sim_ota_update_write(update, image, 10001), OTA_OK);
    sim_ota_update_abort(update); /* e.g. the connection dropped, or a reset */
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_ota_update_resume(1, (uint32_t)len, 10001, &update), OTA_OK);
    assert_int_equal(sim_ota_update_write(update, image + 10001, 5), OTA_OK);
    assert_int_equal(sim_ota_update_write(update, image + 10006, len - 10006), OTA_OK);
    assert_int_equal(sim_ota_update_end(update), OTA_OK);
    uint8_t *back = malloc(len);
    assert_int_equal(sim_ota_slot_read(1, 0, back, len), OTA_OK);
    assert_memory_equal(back, image, len);
    free(back);
    free(image);
    t_flash_free(flash);
}

/* Injected flash failures map to FLASH_ERASE / FLASH_WRITE, and a retry is possible (no stuck
 * handle). */
static void test_injected_flash_failures(void **state) {
    (void)state;
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_flash_t *flash = setup(&e0, NULL, true);
    assert_int_equal(t_boot(NULL), 0);
    sim_ota_update_t *update = NULL;
    sim_flash_set_fail_ops(flash, sim_flash_op_count(flash) + 2, 1); /* the 2nd sector erase */
    assert_int_equal(sim_ota_update_begin(1, 70000, &update), OTA_ERR_FLASH_ERASE);
    assert_int_equal(sim_ota_update_open_count(), 0);
    assert_int_equal(sim_ota_update_begin(1, 70000, &update), OTA_OK);
    uint8_t word[4] = {0xE9, 0, 0, 0};
    sim_flash_set_fail_ops(flash, sim_flash_op_count(flash) + 1, 1);
    assert_int_equal(sim_ota_update_write(update, word, 4), OTA_ERR_FLASH_WRITE);
    sim_ota_update_abort(update);
    /* The retry of the whole image works; then mark_valid's otadata write fails once. */
    assert_int_equal(write_image(1, "app_v2.bin"), OTA_OK);
    assert_int_equal(sim_ota_set_boot_slot(1), OTA_OK);
    assert_int_equal(t_boot(NULL), 1);
    sim_flash_set_fail_ops(flash, sim_flash_op_count(flash) + 2, 1);
    assert_int_equal(sim_ota_mark_valid(), OTA_ERR_FLASH_WRITE);
    sim_flash_set_fail_ops(flash, 0, 0);
    assert_int_equal(sim_ota_mark_valid(), OTA_OK);
    t_flash_free(flash);
}

static void test_chip_info_and_no_app(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_device_init(flash, true);
    sim_device_set_chip_rev_full(2);
    uint16_t chip_id = 0, rev = 0;
    sim_ota_chip_info(&chip_id, &rev);
    assert_int_equal(chip_id, 9);
    assert_int_equal(rev, 2);
    /* Before any boot: no table, no running app. */
    assert_int_equal(sim_ota_running_slot(), OTA_SLOT_NONE);
    assert_int_equal(sim_ota_next_update_slot(), OTA_SLOT_NONE);
    assert_int_equal(sim_ota_mark_valid(), OTA_ERR_NOT_FOUND);
    t_flash_free(flash);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_update_cycle),
        cmocka_unit_test(test_rule7_mark_valid_after_fallback_marks_broken_slot),
        cmocka_unit_test(test_rule7_mark_invalid_acts_on_active_entry),
        cmocka_unit_test(test_rule8_state_from_first_matching_entry),
        cmocka_unit_test(test_begin_refused_while_pending_verify),
        cmocka_unit_test(test_rule9_set_boot_running_slot_rewrites_new),
        cmocka_unit_test(test_rule10_set_boot_factory_erases_otadata),
        cmocka_unit_test(test_rule11_begin_erases_inactive_entry),
        cmocka_unit_test(test_rule11_inactive_naming_running_slot_kept),
        cmocka_unit_test(test_rule12_seq_wraparound_to_unusable_entry),
        cmocka_unit_test(test_rule12_no_seq_reachable_does_not_hang),
        cmocka_unit_test(test_rule13_mark_invalid_without_fallback_fails),
        cmocka_unit_test(test_rule15_last_invalid_lower_seq),
        cmocka_unit_test(test_rule16_rollback_disabled),
        cmocka_unit_test(test_rule17_gap_slot_refused_by_app),
        cmocka_unit_test(test_update_refusals),
        cmocka_unit_test(test_corrupt_image_rejected_by_end),
        cmocka_unit_test(test_resume_at_odd_offset),
        cmocka_unit_test(test_injected_flash_failures),
        cmocka_unit_test(test_chip_info_and_no_app),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
