/* test_sim_bootloader.c — the bootloader model, one test per rule of esp-idf-otadata-behaviour.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_bootloader.h"
#include "sim_test_support.h"

/* factory + ota_0 + ota_1, otadata at 0xd000. */
#define F_OTADATA 0xd000u
#define F_FACTORY 0x10000u
#define F_OTA0 0x110000u
#define F_OTA1 0x210000u

static sim_flash_t *factory_flash(void) {
    const t_part_t parts[] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, F_OTADATA, 0x2000},
        {"factory", SIM_PART_TYPE_APP, SIM_PART_SUBTYPE_FACTORY, F_FACTORY, 0x100000},
        {"ota_0", SIM_PART_TYPE_APP, 0x10, F_OTA0, 0x100000},
        {"ota_1", SIM_PART_TYPE_APP, 0x11, F_OTA1, 0x100000},
    };
    uint8_t table[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    t_build_table(parts, 4, true, table);
    return t_flash_new(table);
}

/* The shipped 4MB layout with v1 in ota_0 and v2 in ota_1. */
static sim_flash_t *two_slot_flash(void) {
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    t_put_image(flash, T_OTA1_OFFSET, "app_v2.bin");
    return flash;
}

static void corrupt_slot(sim_flash_t *flash, uint32_t slot_offset) {
    t_flip_bit(flash, slot_offset + 40000);
}

static void assert_entry(const sim_otadata_entry_t *entry, uint32_t seq, uint32_t state) {
    assert_int_equal(entry->ota_seq, seq);
    assert_int_equal(entry->ota_state, state);
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

/* Rule 1: no factory, otadata erased → slot 0 boots and seq = 1, VALID is written to sector 0. */
static void test_rule1_first_boot_writes_initial_entry(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    t_device_init(flash, true);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), 0);
    assert_string_equal(result.image.app_desc.version, "1.0.0");
    assert_true(t_log_contains("I boot: No factory image, trying OTA 0"));
    assert_true(t_log_contains("I boot: Loaded app from partition at offset 0x20000"));
    assert_true(t_log_contains("I boot: Set actual ota_seq=1 in otadata[0]"));
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[0], 1, SIM_OTA_STATE_VALID);
    assert_true(sim_otadata_crc_ok(&e[0]));
    assert_true(entry_erased(&e[1]));
    t_flash_free(flash);
}

/* Rule 1, "or the first slot whose image loads": ota_0 empty → ota_1 boots and seq = 2 is written.
 */
static void test_rule1_first_loadable_slot(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_put_image(flash, T_OTA1_OFFSET, "app_v2.bin");
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 1);
    assert_true(t_log_contains("E boot: OTA app partition slot 0 is not bootable"));
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[0], 2, SIM_OTA_STATE_VALID);
    t_flash_free(flash);
}

/* Rule 1 with a factory app: the factory app boots and nothing is written. */
static void test_rule1_factory_writes_nothing(void **state) {
    (void)state;
    sim_flash_t *flash = factory_flash();
    t_put_image(flash, F_FACTORY, "app_v1.bin");
    t_put_image(flash, F_OTA0, "app_v2.bin");
    t_device_init(flash, true);
    uint64_t ops = sim_flash_op_count(flash);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), OTA_SLOT_NONE);
    assert_int_equal(result.boot_index, SIM_BOOT_INDEX_FACTORY);
    assert_true(t_log_contains("I boot: Defaulting to factory image"));
    assert_int_equal(sim_flash_op_count(flash), ops);
    t_flash_free(flash);
}

/* Rule 1's exact condition: both entries CRC-bad but not "invalid" → every slot is tried, nothing
 * written. */
static void test_rule1_crc_bad_entries_try_all_without_writing(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t bad0 = sim_otadata_make(2, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t bad1 = sim_otadata_make(3, SIM_OTA_STATE_VALID);
    bad0.crc ^= 0x100;
    bad1.crc ^= 0x100;
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &bad0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &bad1);
    t_device_init(flash, true);
    uint64_t ops = sim_flash_op_count(flash);
    assert_int_equal(t_boot(NULL), 0);
    assert_true(t_log_contains(
        "E boot: ota data partition invalid and no factory, will try all partitions"));
    assert_int_equal(sim_flash_op_count(flash), ops);
    t_flash_free(flash);
}

/* Rule 2: both CRC-valid but INVALID/ABORTED, no factory → slot 0 (even INVALID), nothing written.
 */
static void test_rule2_both_invalid_boot_slot0_writing_nothing(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0 = sim_otadata_make(3, SIM_OTA_STATE_INVALID); /* names ota_0 */
    sim_otadata_entry_t e1 = sim_otadata_make(4, SIM_OTA_STATE_ABORTED); /* names ota_1 */
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    uint64_t ops = sim_flash_op_count(flash);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(sim_flash_op_count(flash), ops);
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_memory_equal(&e[0], &e0, sizeof(e0));
    assert_memory_equal(&e[1], &e1, sizeof(e1));
    t_flash_free(flash);
}

/* Rule 3: seq 0 with the rest erased is usable; its slot is (0 - 1) mod 2 = 1. */
static void test_rule3_seq0_selects_last_slot(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0;
    memset(&e0, 0xFF, sizeof(e0));
    e0.ota_seq = 0;
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_device_init(flash, true);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), 1);
    assert_false(result.fell_back);
    t_flash_free(flash);
}

/* Rule 4: every entry with state PENDING_VERIFY becomes ABORTED at boot — CRC-invalid or inactive
 * too. */
static void test_rule4_pending_becomes_aborted_everywhere(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_PENDING_VERIFY);
    e0.crc ^= 1; /* CRC-invalid */
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_PENDING_VERIFY);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    t_boot(NULL);
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[0], 1, SIM_OTA_STATE_ABORTED);
    assert_int_equal(e[0].crc, e0.crc); /* rewritten as it was, bad CRC included */
    assert_entry(&e[1], 2, SIM_OTA_STATE_ABORTED);
    t_flash_free(flash);
}

/* Rule 4 (inactive entry): the older entry's PENDING_VERIFY is aborted although the newer one is
 * active. */
static void test_rule4_inactive_entry_aborted_too(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_PENDING_VERIFY);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_VALID);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 1);
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[0], 1, SIM_OTA_STATE_ABORTED);
    assert_entry(&e[1], 2, SIM_OTA_STATE_VALID);
    t_flash_free(flash);
}

/* Rule 4 (flag): without rollback PENDING_VERIFY and NEW stay as they are. */
static void test_rule4_rollback_disabled_leaves_states(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_PENDING_VERIFY);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_NEW);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, false);
    uint64_t ops = sim_flash_op_count(flash);
    assert_int_equal(t_boot(NULL), 1);
    assert_int_equal(sim_flash_op_count(flash), ops);
    t_flash_free(flash);
}

/* Rule 5: NEW → PENDING_VERIFY is written before validation; a broken image falls back in the same
 * boot and the entry becomes ABORTED at the next boot. */
static void test_rule5_new_marked_pending_before_validation(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    corrupt_slot(flash, T_OTA1_OFFSET);
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_NEW);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), 0);
    assert_true(result.fell_back);
    assert_int_equal(result.selected_index, 1);
    assert_true(t_log_contains("E boot: OTA app partition slot 1 is not bootable"));
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_PENDING_VERIFY);
    assert_int_equal(t_boot(NULL), 0);
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_ABORTED);
    assert_entry(&e[0], 1, SIM_OTA_STATE_VALID);
    t_flash_free(flash);
}

/* Rule 5 (good image): NEW → PENDING_VERIFY and the new slot runs. */
static void test_rule5_new_good_image_runs_pending(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_NEW);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), 1);
    assert_string_equal(result.image.app_desc.version, "2.0.0");
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[1], 2, SIM_OTA_STATE_PENDING_VERIFY);
    t_flash_free(flash);
}

/* Rule 6: a failing image is never marked; the bootloader tries the other slot and writes nothing.
 */
static void test_rule6_failing_image_not_marked(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    corrupt_slot(flash, T_OTA1_OFFSET);
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_VALID);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    uint64_t ops = sim_flash_op_count(flash);
    for (int boot = 0; boot < 3; boot++) { /* every boot tries ota_1 first, again */
        t_log_clear();
        assert_int_equal(t_boot(NULL), 0);
        assert_true(t_log_contains("E esp_image: Checksum failed."));
        assert_true(t_log_contains("E boot: OTA app partition slot 1 is not bootable"));
    }
    assert_int_equal(sim_flash_op_count(flash), ops);
    t_flash_free(flash);
}

/* Nothing bootable at all: the boot fails with ESP-IDF's message. */
static void test_no_bootable_app(void **state) {
    (void)state;
    sim_flash_t *flash = t_flash_new(NULL);
    t_device_init(flash, true);
    sim_boot_result_t result;
    assert_int_equal(sim_bootloader_boot(&result), SIM_BOOT_ERR_NO_BOOTABLE_APP);
    assert_true(t_log_contains("E boot: No bootable app partitions in the partition table"));
    assert_int_equal(sim_ota_running_slot(), OTA_SLOT_NONE);
    t_flash_free(flash);
}

static void test_bad_partition_table_refuses_to_boot(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    t_flip_bit(flash, SIM_PARTITION_TABLE_OFFSET + 0x24); /* inside an entry: MD5 mismatch */
    t_device_init(flash, true);
    assert_int_equal(sim_bootloader_boot(NULL), SIM_BOOT_ERR_PARTITION_TABLE);
    assert_true(t_log_contains("E flash_parts: Incorrect MD5 checksum"));
    assert_true(t_log_contains("E boot: Failed to verify partition table"));
    t_flash_free(flash);
}

/* Rule 14: equal seqs → entry 0 is the active one (only it goes NEW → PENDING_VERIFY). */
static void test_rule14_equal_seq_entry0_wins(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t new_entry = sim_otadata_make(2, SIM_OTA_STATE_NEW);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &new_entry);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &new_entry);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 1);
    sim_otadata_entry_t e[2];
    t_get_otadata(flash, T_OTADATA_OFFSET, e);
    assert_entry(&e[0], 2, SIM_OTA_STATE_PENDING_VERIFY);
    assert_entry(&e[1], 2, SIM_OTA_STATE_NEW);
    t_flash_free(flash);
}

/* Rule 14: an unknown state value counts as usable. */
static void test_rule14_unknown_state_usable(void **state) {
    (void)state;
    sim_flash_t *flash = two_slot_flash();
    sim_otadata_entry_t e0 = sim_otadata_make(1, SIM_OTA_STATE_VALID);
    sim_otadata_entry_t e1 = sim_otadata_make(2, 0x77);
    t_put_otadata(flash, T_OTADATA_OFFSET, 0, &e0);
    t_put_otadata(flash, T_OTADATA_OFFSET, 1, &e1);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 1);
    t_flash_free(flash);
}

/* Rule 17: ota_0 + ota_2 — the bootloader counts 2 slots, so ota_2 is never booted. */
static void test_rule17_gap_slot_never_boots(void **state) {
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
    sim_otadata_entry_t e0 = sim_otadata_make(3, SIM_OTA_STATE_VALID); /* (3-1) % 2 = 0 */
    sim_otadata_entry_t e1 = sim_otadata_make(2, SIM_OTA_STATE_VALID); /* (2-1) % 2 = 1: no ota_1 */
    t_put_otadata(flash, 0xd000, 0, &e0);
    t_put_otadata(flash, 0xd000, 1, &e1);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0);
    e0 = sim_otadata_make(4, SIM_OTA_STATE_VALID); /* now seq 4 → index 1 → nothing there → ota_0 */
    t_put_otadata(flash, 0xd000, 0, &e0);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), 0);
    assert_int_equal(result.selected_index, 1);
    /* With ota_0 broken, the valid ota_2 is still never tried. */
    t_flip_bit(flash, 0x10000 + 40000);
    t_log_clear();
    assert_int_equal(sim_bootloader_boot(NULL), SIM_BOOT_ERR_NO_BOOTABLE_APP);
    assert_false(t_log_contains("offset 0x110000"));
    t_flash_free(flash);
}

/* The fallback order: from the selected slot down to factory, then upwards. */
static void test_fallback_goes_down_to_factory_first(void **state) {
    (void)state;
    sim_flash_t *flash = factory_flash();
    t_put_image(flash, F_FACTORY, "app_v1.bin");
    t_put_image(flash, F_OTA0, "app_v2.bin");
    t_put_image(flash, F_OTA1, "app_v3.bin");
    corrupt_slot(flash, F_OTA1);
    sim_otadata_entry_t e0 = sim_otadata_make(2, SIM_OTA_STATE_VALID); /* ota_1 */
    t_put_otadata(flash, F_OTADATA, 0, &e0);
    t_device_init(flash, true);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), 0); /* 1 is broken → 0 before factory */
    assert_string_equal(result.image.app_desc.version, "2.0.0");
    corrupt_slot(flash, F_OTA0);
    assert_int_equal(t_boot(&result), OTA_SLOT_NONE);
    assert_int_equal(result.boot_index, SIM_BOOT_INDEX_FACTORY);
    t_flash_free(flash);
}

/* Last resort: the test app, after every OTA slot and the factory app failed. */
static void test_falls_back_to_test_app(void **state) {
    (void)state;
    const t_part_t parts[] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, 0xd000, 0x2000},
        {"test", SIM_PART_TYPE_APP, SIM_PART_SUBTYPE_TEST, 0x10000, 0x100000},
        {"ota_0", SIM_PART_TYPE_APP, 0x10, 0x110000, 0x100000},
    };
    uint8_t table[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    t_build_table(parts, 3, true, table);
    sim_flash_t *flash = t_flash_new(table);
    t_put_image(flash, 0x10000, "app_v3.bin");
    t_put_image(flash, 0x110000, "app_v1.bin");
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0); /* a good ota_0 wins over the test app */
    corrupt_slot(flash, 0x110000);
    sim_boot_result_t result;
    assert_int_equal(t_boot(&result), OTA_SLOT_NONE);
    assert_int_equal(result.boot_index, SIM_BOOT_INDEX_TEST);
    assert_string_equal(result.image.app_desc.version, "3.0.0");
    assert_true(t_log_contains("W boot: Falling back to test app as only bootable partition"));
    t_flash_free(flash);
}

/* The pure selection function agrees with what the boot writes. */
static void test_select_reports_writes(void **state) {
    (void)state;
    sim_otadata_entry_t e[2] = {sim_otadata_make(5, SIM_OTA_STATE_PENDING_VERIFY),
                                sim_otadata_make(4, SIM_OTA_STATE_NEW)};
    sim_boot_selection_t sel = sim_bootloader_select(e, 2, false, true);
    assert_true(sel.aborted[0]);
    assert_false(sel.aborted[1]);
    assert_int_equal(sel.active_entry, 1);
    assert_int_equal(sel.marked_pending, 1);
    assert_int_equal(sel.start_index, 1); /* (4-1) % 2 */
    assert_int_equal(e[0].ota_state, SIM_OTA_STATE_ABORTED);
    assert_int_equal(e[1].ota_state, SIM_OTA_STATE_PENDING_VERIFY);
    assert_false(sel.initial_write);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule1_first_boot_writes_initial_entry),
        cmocka_unit_test(test_rule1_first_loadable_slot),
        cmocka_unit_test(test_rule1_factory_writes_nothing),
        cmocka_unit_test(test_rule1_crc_bad_entries_try_all_without_writing),
        cmocka_unit_test(test_rule2_both_invalid_boot_slot0_writing_nothing),
        cmocka_unit_test(test_rule3_seq0_selects_last_slot),
        cmocka_unit_test(test_rule4_pending_becomes_aborted_everywhere),
        cmocka_unit_test(test_rule4_inactive_entry_aborted_too),
        cmocka_unit_test(test_rule4_rollback_disabled_leaves_states),
        cmocka_unit_test(test_rule5_new_marked_pending_before_validation),
        cmocka_unit_test(test_rule5_new_good_image_runs_pending),
        cmocka_unit_test(test_rule6_failing_image_not_marked),
        cmocka_unit_test(test_no_bootable_app),
        cmocka_unit_test(test_bad_partition_table_refuses_to_boot),
        cmocka_unit_test(test_rule14_equal_seq_entry0_wins),
        cmocka_unit_test(test_rule14_unknown_state_usable),
        cmocka_unit_test(test_rule17_gap_slot_never_boots),
        cmocka_unit_test(test_fallback_goes_down_to_factory_first),
        cmocka_unit_test(test_falls_back_to_test_app),
        cmocka_unit_test(test_select_reports_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
