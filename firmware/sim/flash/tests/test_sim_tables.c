/* test_sim_tables.c — CRC/MD5/SHA-256 vectors, otadata entries, partition table parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_digest.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"
#include "sim_test_support.h"

static void hex(const uint8_t *bytes, size_t len, char *out) {
    static const char DIGITS[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = DIGITS[bytes[i] >> 4];
        out[2 * i + 1] = DIGITS[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

/* Rule 18: standard CRC-32 and the otadata vectors. */
static void test_rule18_crc_vectors(void **state) {
    (void)state;
    assert_int_equal(sim_crc32_le(0, (const uint8_t *)"123456789", 9), 0xCBF43926u);
    assert_int_equal(sim_otadata_make(1, SIM_OTA_STATE_VALID).crc, 0x4743989Au);
    assert_int_equal(sim_otadata_make(2, SIM_OTA_STATE_VALID).crc, 0x55F63774u);
}

/* Rule 3 (CRC half): seq 0 has crc 0xFFFFFFFF, so seq 0 with the rest erased is CRC-valid and
 * usable. */
static void test_rule3_seq0_erased_rest_is_valid(void **state) {
    (void)state;
    sim_otadata_entry_t entry;
    memset(&entry, 0xFF, sizeof(entry));
    entry.ota_seq = 0;
    assert_int_equal(sim_otadata_crc(&entry), 0xFFFFFFFFu);
    assert_true(sim_otadata_crc_ok(&entry));
    assert_true(sim_otadata_entry_valid(&entry));
    assert_int_equal(sim_otadata_slot_of_seq(0, 2), 1); /* (0 - 1) mod 2 in uint32 */
    assert_int_equal(sim_otadata_slot_of_seq(0, 3), 0); /* 0xFFFFFFFF mod 3 == 0 */
}

static void test_digest_vectors(void **state) {
    (void)state;
    char text[65];
    uint8_t md5[16];
    sim_md5_t m;
    sim_md5_init(&m);
    sim_md5_finish(&m, md5);
    hex(md5, 16, text);
    assert_string_equal(text, "d41d8cd98f00b204e9800998ecf8427e");
    sim_md5_init(&m);
    sim_md5_update(&m, "abc", 3);
    sim_md5_finish(&m, md5);
    hex(md5, 16, text);
    assert_string_equal(text, "900150983cd24fb0d6963f7d28e17f72");

    uint8_t sha[32];
    sim_sha256_t s;
    sim_sha256_init(&s);
    sim_sha256_update(&s, "abc", 3);
    sim_sha256_finish(&s, sha);
    hex(sha, 32, text);
    assert_string_equal(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sim_sha256_init(&s);
    for (size_t i = 0; i < strlen(two_blocks); i++) { /* byte at a time: exercises buffering */
        sim_sha256_update(&s, two_blocks + i, 1);
    }
    sim_sha256_finish(&s, sha);
    hex(sha, 32, text);
    assert_string_equal(text, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_otadata_pack_roundtrip_and_predicates(void **state) {
    (void)state;
    sim_otadata_entry_t entry = sim_otadata_make(7, SIM_OTA_STATE_PENDING_VERIFY);
    memcpy(entry.seq_label, "label", 5);
    uint8_t raw[32];
    sim_otadata_pack(&entry, raw);
    assert_int_equal(raw[0], 7);
    assert_int_equal(raw[24], 1);
    sim_otadata_entry_t back;
    sim_otadata_unpack(raw, &back);
    assert_memory_equal(&back, &entry, sizeof(entry));

    sim_otadata_entry_t erased;
    memset(&erased, 0xFF, sizeof(erased));
    assert_true(sim_otadata_entry_invalid(&erased));
    assert_false(sim_otadata_entry_valid(&erased));
    sim_otadata_entry_t aborted = sim_otadata_make(3, SIM_OTA_STATE_ABORTED);
    assert_true(sim_otadata_entry_invalid(&aborted));
    sim_otadata_entry_t bad_crc = sim_otadata_make(3, SIM_OTA_STATE_VALID);
    bad_crc.crc ^= 1;
    assert_false(sim_otadata_entry_invalid(&bad_crc)); /* "invalid" looks at seq/state only */
    assert_false(sim_otadata_entry_valid(&bad_crc));
    sim_otadata_entry_t odd_state = sim_otadata_make(3, 0x77);
    assert_true(sim_otadata_entry_valid(&odd_state)); /* rule 14: unknown states are usable */
    assert_string_equal(sim_otadata_state_name(0x77), "unknown");
    assert_string_equal(sim_otadata_state_name(SIM_OTA_STATE_PENDING_VERIFY), "pending_verify");
}

/* Rule 14 (selection half): equal seqs → entry 0; otherwise the higher (max) / lower (min). */
static void test_rule14_select_ties_and_order(void **state) {
    (void)state;
    sim_otadata_entry_t e[2] = {sim_otadata_make(5, SIM_OTA_STATE_VALID),
                                sim_otadata_make(5, SIM_OTA_STATE_VALID)};
    bool both[2] = {true, true};
    assert_int_equal(sim_otadata_select(e, both, true), 0);
    assert_int_equal(sim_otadata_select(e, both, false), 0);
    e[1] = sim_otadata_make(6, SIM_OTA_STATE_VALID);
    assert_int_equal(sim_otadata_select(e, both, true), 1);
    assert_int_equal(sim_otadata_select(e, both, false), 0);
    bool second_only[2] = {false, true};
    assert_int_equal(sim_otadata_select(e, second_only, false), 1);
    bool none[2] = {false, false};
    assert_int_equal(sim_otadata_select(e, none, true), -1);
}

static void test_parse_generated_4mb_table(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *raw = t_fixture("partitions_4MB.bin", &len);
    sim_partition_table_t table;
    char why[128];
    assert_int_equal(sim_partition_table_parse(raw, len, 4u << 20, &table, why, sizeof(why)),
                     SIM_PT_OK);
    assert_true(table.has_md5);
    const sim_partition_t *ota0 = sim_partition_find_label(&table, "ota_0");
    assert_non_null(ota0);
    assert_int_equal(ota0->offset_bytes, T_OTA0_OFFSET);
    assert_int_equal(ota0->size_bytes, T_SLOT_SIZE);
    assert_ptr_equal(sim_partition_ota_slot(&table, 1), sim_partition_find_label(&table, "ota_1"));
    assert_int_equal(
        sim_partition_find(&table, SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA)->offset_bytes,
        T_OTADATA_OFFSET);
    assert_int_equal(sim_partition_bootloader_ota_count(&table), 2);
    assert_int_equal(sim_partition_app_ota_count(&table), 2);
    /* The same table on a 2 MiB chip does not fit. */
    assert_int_equal(sim_partition_table_parse(raw, len, 2u << 20, &table, why, sizeof(why)),
                     SIM_PT_ERR_SIZE);
    assert_non_null(strstr(why, "exceeds flash chip size"));
    /* One bit flipped inside an entry: the MD5 entry no longer matches. */
    raw[0x30] ^= 0x01;
    assert_int_equal(sim_partition_table_parse(raw, len, 4u << 20, &table, why, sizeof(why)),
                     SIM_PT_ERR_MD5);
    assert_string_equal(why, "Incorrect MD5 checksum");
    free(raw);
}

static void test_parse_rejects_bad_tables(void **state) {
    (void)state;
    const t_part_t parts[] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, 0xd000, 0x2000},
        {"ota_0", SIM_PART_TYPE_APP, 0x10, 0x10000, 0x100000},
    };
    uint8_t raw[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    sim_partition_table_t table;
    char why[128];

    t_build_table(parts, 2, false, raw); /* no MD5 entry: accepted, like ESP-IDF */
    assert_int_equal(
        sim_partition_table_parse(raw, sizeof(raw), 4u << 20, &table, why, sizeof(why)), SIM_PT_OK);
    assert_int_equal(table.count, 2);
    assert_false(table.has_md5);

    t_build_table(parts, 2, true, raw);
    memcpy(raw + 3 * 32, raw + 2 * 32, 32); /* a second MD5 entry */
    assert_int_equal(
        sim_partition_table_parse(raw, sizeof(raw), 4u << 20, &table, why, sizeof(why)),
        SIM_PT_ERR_MD5);
    assert_string_equal(why, "Only one MD5 checksum is allowed");

    t_build_table(parts, 2, true, raw);
    raw[32] = 0x12; /* second entry's magic */
    assert_int_equal(
        sim_partition_table_parse(raw, sizeof(raw), 4u << 20, &table, why, sizeof(why)),
        SIM_PT_ERR_MAGIC);

    memset(raw, 0xFF, sizeof(raw)); /* erased: the first entry cannot be the end */
    assert_int_equal(
        sim_partition_table_parse(raw, sizeof(raw), 4u << 20, &table, why, sizeof(why)),
        SIM_PT_ERR_MAGIC);

    t_part_t many[SIM_PARTITION_MAX_ENTRIES];
    for (int i = 0; i < (int)SIM_PARTITION_MAX_ENTRIES; i++) {
        many[i] = (t_part_t){"p", SIM_PART_TYPE_DATA, 0x99, 0x10000 + (uint32_t)i * 0x1000, 0x1000};
    }
    t_build_table(many, SIM_PARTITION_MAX_ENTRIES, false, raw);
    assert_int_equal(
        sim_partition_table_parse(raw, sizeof(raw), 4u << 20, &table, why, sizeof(why)),
        SIM_PT_ERR_NO_END);
}

/* Rule 17 (counting half): ota_0 + ota_2 → the bootloader counts 2, the app 1. */
static void test_rule17_gap_counts(void **state) {
    (void)state;
    const t_part_t parts[] = {
        {"otadata", SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA, 0xd000, 0x2000},
        {"ota_0", SIM_PART_TYPE_APP, 0x10, 0x10000, 0x100000},
        {"ota_2", SIM_PART_TYPE_APP, 0x12, 0x110000, 0x100000},
    };
    uint8_t raw[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    t_build_table(parts, 3, true, raw);
    sim_partition_table_t table;
    assert_int_equal(sim_partition_table_parse(raw, sizeof(raw), 4u << 20, &table, NULL, 0),
                     SIM_PT_OK);
    assert_int_equal(sim_partition_bootloader_ota_count(&table), 2);
    assert_int_equal(sim_partition_app_ota_count(&table), 1);
    assert_null(sim_partition_ota_slot(&table, 1));
    assert_non_null(sim_partition_ota_slot(&table, 2));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule18_crc_vectors),
        cmocka_unit_test(test_rule3_seq0_erased_rest_is_valid),
        cmocka_unit_test(test_digest_vectors),
        cmocka_unit_test(test_otadata_pack_roundtrip_and_predicates),
        cmocka_unit_test(test_rule14_select_ties_and_order),
        cmocka_unit_test(test_parse_generated_4mb_table),
        cmocka_unit_test(test_parse_rejects_bad_tables),
        cmocka_unit_test(test_rule17_gap_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
