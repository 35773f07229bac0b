/* test_ota_trusted_keys.c — the "<key id>:<public key>,…" trusted-key list parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "ota_img_state.h"
#include "ota_manifest.h"
#include "ota_test_support.h"
#include "ota_trusted_keys.h"

#define KEY_COUNT (OTA_AGENT_MAX_TRUSTED_KEYS + 2)
#define LIST_BYTES (KEY_COUNT * (OTA_TRUSTED_KEYS_ENTRY_CHARS + 4) + 64)
#define MAX_CALLS 16

/* The key of the Python test vector in test_ota_manifest.c (csi_ota.manifest). */
static const char PYTHON_KEY_ID[] = "fd1fee555a7ccac8";
static const char PYTHON_PUBLIC_KEY[] =
    "04471c3e758c4904285bba7e53118ed0f524adeb0757d25bd2f8e7b0d76dfa714cdd520f7aca8a8b917acc37f51"
    "de8f0c9bbe3ad858382e702dc25a12d09f7a858";

static ota_test_key_t test_keys[KEY_COUNT];
static char entries[KEY_COUNT][OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];

typedef struct {
    size_t calls;
    size_t index[MAX_CALLS];
    size_t len[MAX_CALLS];
    ota_status_t status[MAX_CALLS];
} entry_log_t;

static void record_entry(void *ctx, size_t index, const char *entry, size_t len,
                         ota_status_t status) {
    entry_log_t *seen = ctx;
    assert_non_null(entry);
    assert_true(seen->calls < MAX_CALLS);
    seen->index[seen->calls] = index;
    seen->len[seen->calls] = len;
    seen->status[seen->calls] = status;
    seen->calls++;
}

static int setup(void **state) {
    (void)state;
    for (size_t i = 0; i < KEY_COUNT; i++) {
        ota_test_key_generate(&test_keys[i]);
        char *e = entries[i];
        ota_manifest_hex_encode(test_keys[i].trusted.key_id, OTA_AGENT_KEY_ID_BYTES, e);
        e[OTA_TRUSTED_KEYS_ID_HEX_CHARS] = ':';
        ota_manifest_hex_encode(test_keys[i].trusted.raw, OTA_AGENT_PUBLIC_KEY_BYTES,
                                e + OTA_TRUSTED_KEYS_ID_HEX_CHARS + 1);
        assert_int_equal(strlen(e), OTA_TRUSTED_KEYS_ENTRY_CHARS);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (size_t i = 0; i < KEY_COUNT; i++) {
        ota_test_key_free(&test_keys[i]);
    }
    return 0;
}

/* buf = id_len characters of id, then sep, then raw_len characters of raw. */
static void compose(char *buf, size_t cap, const char *id, size_t id_len, const char *sep,
                    const char *raw, size_t raw_len) {
    const size_t sep_len = strlen(sep);
    assert_true(id_len + sep_len + raw_len < cap);
    memcpy(buf, id, id_len);
    memcpy(buf + id_len, sep, sep_len);
    memcpy(buf + id_len + sep_len, raw, raw_len);
    buf[id_len + sep_len + raw_len] = '\0';
}

/* The public-key hex of entries[i]. */
#define RAW_OF(i) (entries[i] + OTA_TRUSTED_KEYS_ID_HEX_CHARS + 1)
#define ID_HEX OTA_TRUSTED_KEYS_ID_HEX_CHARS
#define RAW_HEX OTA_TRUSTED_KEYS_RAW_HEX_CHARS

static ota_status_t parse_entry_str(const char *entry, ota_trusted_key_t *out) {
    return ota_trusted_keys_parse_entry(entry, strlen(entry), out);
}

static void assert_key_equal(const ota_trusted_key_t *a, const ota_trusted_key_t *b) {
    assert_memory_equal(a->key_id, b->key_id, sizeof(a->key_id));
    assert_memory_equal(a->raw, b->raw, sizeof(a->raw));
}

/* keys[0..n) are test_keys[0..n). */
static void assert_first_test_keys(const ota_trusted_key_t *keys, size_t n) {
    for (size_t i = 0; i < n; i++) {
        assert_key_equal(&keys[i], &test_keys[i].trusted);
    }
}

/* Parses list into keys[0..OTA_AGENT_MAX_TRUSTED_KEYS), recording every entry in *seen. */
static ota_status_t parse_recorded(const char *list, ota_trusted_key_t *keys, entry_log_t *seen,
                                   ota_trusted_keys_result_t *r) {
    memset(seen, 0, sizeof(*seen));
    return ota_trusted_keys_parse_list(list, keys, OTA_AGENT_MAX_TRUSTED_KEYS, record_entry, seen,
                                       r);
}

static void test_entry_python_key(void **state) {
    (void)state;
    char entry[OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];
    snprintf(entry, sizeof(entry), "%s:%s", PYTHON_KEY_ID, PYTHON_PUBLIC_KEY);
    ota_trusted_key_t key;
    assert_int_equal(parse_entry_str(entry, &key), OTA_OK);
    assert_int_equal(key.key_id[0], 0xfd);
    assert_int_equal(key.key_id[7], 0xc8);
    assert_int_equal(key.raw[0], 0x04);
    assert_int_equal(key.raw[64], 0x58);
    /* Upper-case hex is accepted too (Kconfig strings are hand-edited). */
    ota_trusted_key_t upper;
    for (char *c = entry; *c != '\0'; c++) {
        *c = (char)toupper((unsigned char)*c);
    }
    assert_int_equal(parse_entry_str(entry, &upper), OTA_OK);
    assert_key_equal(&key, &upper);
}

static void test_entry_generated_key(void **state) {
    (void)state;
    ota_trusted_key_t key;
    assert_int_equal(parse_entry_str(entries[0], &key), OTA_OK);
    assert_key_equal(&key, &test_keys[0].trusted);
    /* len bounds the entry: what follows it is not read. */
    char longer[OTA_TRUSTED_KEYS_ENTRY_CHARS + 8];
    snprintf(longer, sizeof(longer), "%s,junk", entries[1]);
    assert_int_equal(ota_trusted_keys_parse_entry(longer, OTA_TRUSTED_KEYS_ENTRY_CHARS, &key),
                     OTA_OK);
    assert_key_equal(&key, &test_keys[1].trusted);
}

static void test_entry_wrong_lengths(void **state) {
    (void)state;
    ota_trusted_key_t key;
    memset(&key, 0xAA, sizeof(key));
    const ota_trusted_key_t untouched = key;
    char buf[OTA_TRUSTED_KEYS_ENTRY_CHARS + 8];
    /* Every length but the right one. */
    for (size_t len = 0; len < sizeof(buf); len++) {
        if (len == OTA_TRUSTED_KEYS_ENTRY_CHARS) {
            continue;
        }
        compose(buf, sizeof(buf), entries[0], OTA_TRUSTED_KEYS_ENTRY_CHARS, "0000000", "", 0);
        assert_int_equal(ota_trusted_keys_parse_entry(buf, len, &key), OTA_ERR_CONFIG);
    }
    /* 15-hex id with a 131-hex key, 17-hex id with a 129-hex key: same total length. */
    memcpy(buf, entries[0], OTA_TRUSTED_KEYS_ENTRY_CHARS + 1);
    buf[15] = ':';
    buf[16] = '0';
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    memcpy(buf, entries[0], OTA_TRUSTED_KEYS_ENTRY_CHARS + 1);
    buf[16] = '0';
    buf[17] = ':';
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    /* Short public keys (a compressed point is 66 hex). */
    compose(buf, sizeof(buf), entries[0], ID_HEX, ":", RAW_OF(0), 66);
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    compose(buf, sizeof(buf), entries[0], ID_HEX, ":", "", 0);
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    compose(buf, sizeof(buf), "", 0, ":", RAW_OF(0), RAW_HEX);
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    assert_memory_equal(&key, &untouched, sizeof(key));
}

static void test_entry_bad_hex(void **state) {
    (void)state;
    ota_trusted_key_t key;
    const size_t positions[] = {0, 7, 15, 17, 18, 80, OTA_TRUSTED_KEYS_ENTRY_CHARS - 1};
    const char bad_chars[] = {'g', 'G', ' ', 'x', '-', ',', '\0'};
    for (size_t p = 0; p < sizeof(positions) / sizeof(positions[0]); p++) {
        for (size_t c = 0; c < sizeof(bad_chars); c++) {
            char buf[OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];
            memcpy(buf, entries[0], sizeof(buf));
            buf[positions[p]] = bad_chars[c];
            assert_int_equal(ota_trusted_keys_parse_entry(buf, OTA_TRUSTED_KEYS_ENTRY_CHARS, &key),
                             OTA_ERR_CONFIG);
        }
    }
}

static void test_entry_missing_colon(void **state) {
    (void)state;
    ota_trusted_key_t key;
    char buf[OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];
    const char separators[] = {'0', '-', ';', ' ', '='};
    for (size_t i = 0; i < sizeof(separators); i++) {
        memcpy(buf, entries[0], sizeof(buf));
        buf[OTA_TRUSTED_KEYS_ID_HEX_CHARS] = separators[i];
        assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    }
    /* No separator at all: id and key run together (one character short). */
    compose(buf, sizeof(buf), entries[0], ID_HEX, "", RAW_OF(0), RAW_HEX);
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
}

static void test_entry_not_uncompressed_point(void **state) {
    (void)state;
    ota_trusted_key_t key;
    const char *prefixes[] = {"02", "03", "00", "05", "40", "ff"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char buf[OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];
        memcpy(buf, entries[0], sizeof(buf));
        memcpy(buf + OTA_TRUSTED_KEYS_ID_HEX_CHARS + 1, prefixes[i], 2);
        /* Malformed before the id check: not OTA_ERR_MANIFEST_KEY. */
        assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_CONFIG);
    }
}

static void test_entry_id_mismatch(void **state) {
    (void)state;
    ota_trusted_key_t key;
    memset(&key, 0, sizeof(key));
    char buf[OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];
    /* Another key's id. */
    compose(buf, sizeof(buf), entries[1], ID_HEX, ":", RAW_OF(0), RAW_HEX);
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_MANIFEST_KEY);
    /* One hex digit of the id changed. */
    memcpy(buf, entries[0], sizeof(buf));
    buf[3] = buf[3] == '0' ? '1' : '0';
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_MANIFEST_KEY);
    /* One hex digit of the key changed (still 04||…). */
    memcpy(buf, entries[0], sizeof(buf));
    buf[100] = buf[100] == '0' ? '1' : '0';
    assert_int_equal(parse_entry_str(buf, &key), OTA_ERR_MANIFEST_KEY);
    /* *out is written only on success. */
    const ota_trusted_key_t zero = {{0}, {0}};
    assert_memory_equal(&key, &zero, sizeof(key));
}

static void test_entry_null_args(void **state) {
    (void)state;
    ota_trusted_key_t key;
    assert_int_equal(ota_trusted_keys_parse_entry(NULL, 0, &key), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_trusted_keys_parse_entry(entries[0], OTA_TRUSTED_KEYS_ENTRY_CHARS, NULL),
                     OTA_ERR_INVALID_ARG);
}

static void test_list_single(void **state) {
    (void)state;
    ota_trusted_key_t keys[OTA_AGENT_MAX_TRUSTED_KEYS];
    ota_trusted_keys_result_t r;
    assert_int_equal(
        ota_trusted_keys_parse_list(entries[2], keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &r),
        OTA_OK);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(r.bad_status, OTA_OK);
    assert_null(r.bad_entry);
    assert_false(r.truncated);
    assert_key_equal(&keys[0], &test_keys[2].trusted);
}

static void test_list_multiple(void **state) {
    (void)state;
    char list[LIST_BYTES];
    snprintf(list, sizeof(list), "%s,%s,%s", entries[0], entries[1], entries[2]);
    ota_trusted_key_t keys[OTA_AGENT_MAX_TRUSTED_KEYS];
    ota_trusted_keys_result_t r;
    entry_log_t seen;
    assert_int_equal(parse_recorded(list, keys, &seen, &r), OTA_OK);
    assert_int_equal(r.count, 3);
    assert_first_test_keys(keys, 3);
    assert_int_equal(seen.calls, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(seen.index[i], i);
        assert_int_equal(seen.len[i], OTA_TRUSTED_KEYS_ENTRY_CHARS);
        assert_int_equal(seen.status[i], OTA_OK);
    }
    /* Exactly OTA_AGENT_MAX_TRUSTED_KEYS fit. */
    snprintf(list, sizeof(list), "%s,%s,%s,%s", entries[0], entries[1], entries[2], entries[3]);
    assert_int_equal(
        ota_trusted_keys_parse_list(list, keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &r),
        OTA_OK);
    assert_int_equal(r.count, OTA_AGENT_MAX_TRUSTED_KEYS);
    assert_false(r.truncated);
}

static void test_list_empty_entries(void **state) {
    (void)state;
    ota_trusted_key_t keys[OTA_AGENT_MAX_TRUSTED_KEYS];
    ota_trusted_keys_result_t r;
    const char *empty_lists[] = {"", ",", ",,,"};
    for (size_t i = 0; i < sizeof(empty_lists) / sizeof(empty_lists[0]); i++) {
        entry_log_t seen;
        assert_int_equal(parse_recorded(empty_lists[i], keys, &seen, &r), OTA_OK);
        assert_int_equal(r.count, 0);
        assert_int_equal(seen.calls, 0);
    }
    assert_int_equal(
        ota_trusted_keys_parse_list(NULL, keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &r),
        OTA_OK);
    assert_int_equal(r.count, 0);
    /* Empty entries are skipped but keep their place in the numbering. */
    char list[LIST_BYTES];
    snprintf(list, sizeof(list), ",%s,,%s,", entries[0], entries[1]);
    entry_log_t seen;
    assert_int_equal(parse_recorded(list, keys, &seen, &r), OTA_OK);
    assert_int_equal(r.count, 2);
    assert_first_test_keys(keys, 2);
    assert_int_equal(seen.calls, 2);
    assert_int_equal(seen.index[0], 1);
    assert_int_equal(seen.index[1], 3);
    /* Whitespace is not an empty entry. */
    assert_int_equal(
        ota_trusted_keys_parse_list(" ", keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &r),
        OTA_ERR_CONFIG);
}

static void test_list_bad_entries_skipped_first_reported(void **state) {
    (void)state;
    char mismatch[OTA_TRUSTED_KEYS_ENTRY_CHARS + 1];
    compose(mismatch, sizeof(mismatch), entries[1], ID_HEX, ":", RAW_OF(0), RAW_HEX);
    char list[LIST_BYTES];
    /* 0: good, 1: empty, 2: malformed, 3: good, 4: id mismatch, 5: good */
    snprintf(list, sizeof(list), "%s,,zz,%s,%s,%s", entries[0], entries[1], mismatch, entries[2]);
    ota_trusted_key_t keys[OTA_AGENT_MAX_TRUSTED_KEYS];
    memset(keys, 0x5A, sizeof(keys));
    ota_trusted_keys_result_t r;
    entry_log_t seen;
    assert_int_equal(parse_recorded(list, keys, &seen, &r), OTA_ERR_CONFIG);
    assert_int_equal(r.count, 3);
    assert_first_test_keys(keys, 3);
    /* Beyond count: untouched. */
    assert_int_equal(keys[3].key_id[0], 0x5A);
    assert_int_equal(keys[3].raw[0], 0x5A);
    assert_int_equal(r.rejected, 2);
    assert_int_equal(r.bad_status, OTA_ERR_CONFIG);
    assert_int_equal(r.bad_index, 2);
    assert_int_equal(r.bad_len, 2);
    assert_memory_equal(r.bad_entry, "zz", 2);
    assert_false(r.truncated);
    assert_int_equal(seen.calls, 5);
    const size_t want_index[] = {0, 2, 3, 4, 5};
    const ota_status_t want_status[] = {OTA_OK, OTA_ERR_CONFIG, OTA_OK, OTA_ERR_MANIFEST_KEY,
                                        OTA_OK};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(seen.index[i], want_index[i]);
        assert_int_equal(seen.status[i], want_status[i]);
    }
    /* An id mismatch first: that is the status returned. */
    snprintf(list, sizeof(list), "%s,%s,not-a-key", mismatch, entries[0]);
    assert_int_equal(
        ota_trusted_keys_parse_list(list, keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &r),
        OTA_ERR_MANIFEST_KEY);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.rejected, 2);
    assert_int_equal(r.bad_index, 0);
    assert_ptr_equal(r.bad_entry, list);
    assert_int_equal(r.bad_len, OTA_TRUSTED_KEYS_ENTRY_CHARS);
    /* A missing colon inside a list. */
    compose(list, sizeof(list), entries[0], ID_HEX, "", RAW_OF(0), RAW_HEX);
    assert_int_equal(
        ota_trusted_keys_parse_list(list, keys, OTA_AGENT_MAX_TRUSTED_KEYS, NULL, NULL, &r),
        OTA_ERR_CONFIG);
    assert_int_equal(r.count, 0);
}

static void test_list_more_than_max(void **state) {
    (void)state;
    char list[LIST_BYTES];
    size_t used = 0;
    for (size_t i = 0; i < KEY_COUNT; i++) {
        used +=
            (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "", entries[i]);
    }
    ota_trusted_key_t keys[OTA_AGENT_MAX_TRUSTED_KEYS];
    ota_trusted_keys_result_t r;
    entry_log_t seen;
    assert_int_equal(parse_recorded(list, keys, &seen, &r), OTA_ERR_CONFIG);
    assert_true(r.truncated);
    assert_int_equal(r.count, OTA_AGENT_MAX_TRUSTED_KEYS);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(r.bad_status, OTA_OK);
    assert_int_equal(seen.calls, OTA_AGENT_MAX_TRUSTED_KEYS); /* the rest is not parsed */
    assert_first_test_keys(keys, OTA_AGENT_MAX_TRUSTED_KEYS);
    /* Whatever follows the cap-th key counts, even junk; a trailing comma does not. */
    snprintf(list, sizeof(list), "%s,%s,", entries[0], entries[1]);
    assert_int_equal(ota_trusted_keys_parse_list(list, keys, 2, NULL, NULL, &r), OTA_OK);
    assert_false(r.truncated);
    snprintf(list, sizeof(list), "%s,%s,junk", entries[0], entries[1]);
    assert_int_equal(ota_trusted_keys_parse_list(list, keys, 2, NULL, NULL, &r), OTA_ERR_CONFIG);
    assert_true(r.truncated);
    assert_int_equal(r.rejected, 0);
    /* A bad entry before the cap is the one reported. */
    snprintf(list, sizeof(list), "zz,%s,%s,%s", entries[0], entries[1], entries[2]);
    assert_int_equal(ota_trusted_keys_parse_list(list, keys, 2, NULL, NULL, &r), OTA_ERR_CONFIG);
    assert_true(r.truncated);
    assert_int_equal(r.rejected, 1);
    assert_int_equal(r.bad_index, 0);
    assert_int_equal(r.count, 2);
    /* No room at all. */
    assert_int_equal(ota_trusted_keys_parse_list(entries[0], NULL, 0, NULL, NULL, &r),
                     OTA_ERR_CONFIG);
    assert_true(r.truncated);
    assert_int_equal(r.count, 0);
    /* The result is optional. */
    assert_int_equal(ota_trusted_keys_parse_list(entries[0], keys, 1, NULL, NULL, NULL), OTA_OK);
}

static void test_img_state_names(void **state) {
    (void)state;
    assert_string_equal(ota_img_state_name(OTA_IMG_NEW), "new");
    assert_string_equal(ota_img_state_name(OTA_IMG_PENDING_VERIFY), "pending_verify");
    assert_string_equal(ota_img_state_name(OTA_IMG_VALID), "valid");
    assert_string_equal(ota_img_state_name(OTA_IMG_INVALID), "invalid");
    assert_string_equal(ota_img_state_name(OTA_IMG_ABORTED), "aborted");
    assert_string_equal(ota_img_state_name(OTA_IMG_UNDEFINED), "undefined");
    assert_string_equal(ota_img_state_name((ota_img_state_t)0x77), "undefined");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_python_key),
        cmocka_unit_test(test_entry_generated_key),
        cmocka_unit_test(test_entry_wrong_lengths),
        cmocka_unit_test(test_entry_bad_hex),
        cmocka_unit_test(test_entry_missing_colon),
        cmocka_unit_test(test_entry_not_uncompressed_point),
        cmocka_unit_test(test_entry_id_mismatch),
        cmocka_unit_test(test_entry_null_args),
        cmocka_unit_test(test_list_single),
        cmocka_unit_test(test_list_multiple),
        cmocka_unit_test(test_list_empty_entries),
        cmocka_unit_test(test_list_bad_entries_skipped_first_reported),
        cmocka_unit_test(test_list_more_than_max),
        cmocka_unit_test(test_img_state_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
