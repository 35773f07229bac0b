/* test_ota_manifest.c — strict manifest parsing and ECDSA P-256 verification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <stdio.h>
#include <string.h>

#include "ota_manifest.h"
#include "ota_port.h"
#include "ota_test_support.h"

#define BUF_BYTES 2048

/* Made by csi_ota.manifest.sign_manifest (Python, `cryptography`) with the
 * P-256 private scalar 0x1234567890abcdef… ×4: proves the C verifier accepts
 * what the release tool writes. */
static const char PYTHON_MANIFEST[] =
    "format=1\n"
    "project=csi_sensor\n"
    "version=2.0.0\n"
    "sequence=17\n"
    "chip_id=9\n"
    "min_chip_rev_full=0\n"
    "max_chip_rev_full=99\n"
    "secure_version=0\n"
    "size=812345\n"
    "sha256=abababababababababababababababababababababababababababababababab\n"
    "rollback=0\n"
    "created=2026-11-28T16:50:00Z\n"
    "key_id=fd1fee555a7ccac8\n"
    "notes=python test vector\n"
    "signature=e7d0a53b1a24c2214e434b626e14e473e1ec8df143988580f2474357212ed51f"
    "70122f68e276e6e1fb5ca6d67a271cb44506857fa7dbf586c84ad964f55a8089\n";
static const char PYTHON_KEY_ID[] = "fd1fee555a7ccac8";
static const char PYTHON_PUBLIC_KEY[] =
    "04471c3e758c4904285bba7e53118ed0f524adeb0757d25bd2f8e7b0d76dfa714cdd520f7aca8a8b917acc37f51"
    "de8f0c9bbe3ad858382e702dc25a12d09f7a858";

static ota_test_key_t test_key;

static int setup(void **state) {
    (void)state;
    ota_test_key_generate(&test_key);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ota_test_key_free(&test_key);
    return 0;
}

static size_t signed_manifest(char *buf, const char *version, uint32_t sequence) {
    size_t len = ota_test_manifest_body(buf, BUF_BYTES, version, sequence, &test_key);
    return ota_test_sign(&test_key, buf, len, BUF_BYTES);
}

static void test_python_vector_verifies(void **state) {
    (void)state;
    ota_trusted_key_t key;
    assert_true(ota_manifest_hex_decode(PYTHON_KEY_ID, 16, key.key_id, sizeof(key.key_id)));
    assert_true(ota_manifest_hex_decode(PYTHON_PUBLIC_KEY, 130, key.raw, sizeof(key.raw)));
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(PYTHON_MANIFEST, strlen(PYTHON_MANIFEST), &key, 1, &m),
                     OTA_OK);
    assert_string_equal(m.version, "2.0.0");
    assert_int_equal(m.sequence, 17);
    assert_int_equal(m.size_bytes, 812345);
    assert_int_equal(m.chip_id, 9);
    assert_int_equal(m.max_chip_rev_full, 99);
    assert_false(m.rollback);
    assert_string_equal(m.notes, "python test vector");
    assert_int_equal(m.sha256[0], 0xab);
    assert_int_equal(m.signed_len_bytes, strlen(PYTHON_MANIFEST) - strlen("signature=") - 128 - 1);
}

static void test_python_vector_one_bit_flipped_fails(void **state) {
    (void)state;
    ota_trusted_key_t key;
    ota_manifest_hex_decode(PYTHON_KEY_ID, 16, key.key_id, sizeof(key.key_id));
    ota_manifest_hex_decode(PYTHON_PUBLIC_KEY, 130, key.raw, sizeof(key.raw));
    char copy[sizeof(PYTHON_MANIFEST)];
    memcpy(copy, PYTHON_MANIFEST, sizeof(copy));
    char *seq = strstr(copy, "sequence=17");
    seq[10] = '8'; /* sequence=18: still well formed, no longer what was signed */
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(copy, strlen(copy), &key, 1, &m),
                     OTA_ERR_MANIFEST_SIGNATURE);
}

static void test_generated_key_roundtrip(void **state) {
    (void)state;
    char buf[BUF_BYTES];
    size_t len = signed_manifest(buf, "1.2.0-rc.1", 42);
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(buf, len, &test_key.trusted, 1, &m), OTA_OK);
    assert_string_equal(m.version, "1.2.0-rc.1");
    assert_int_equal(m.sequence, 42);
    assert_string_equal(m.project, "csi_sensor");
    assert_string_equal(m.created, "2026-11-28T16:50:00Z");
}

static void test_unknown_key_id(void **state) {
    (void)state;
    char buf[BUF_BYTES];
    size_t len = signed_manifest(buf, "2.0.0", 1);
    ota_trusted_key_t other = test_key.trusted;
    other.key_id[0] ^= 0xFF;
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(buf, len, &other, 1, &m), OTA_ERR_MANIFEST_KEY);
    assert_int_equal(ota_manifest_verify(buf, len, NULL, 0, &m), OTA_ERR_MANIFEST_KEY);
}

static void test_signature_by_other_key(void **state) {
    (void)state;
    ota_test_key_t other;
    ota_test_key_generate(&other);
    char buf[BUF_BYTES];
    size_t len = ota_test_manifest_body(buf, sizeof(buf), "2.0.0", 1, &test_key);
    len = ota_test_sign(&other, buf, len, sizeof(buf)); /* names test_key, signed by other */
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(buf, len, &test_key.trusted, 1, &m),
                     OTA_ERR_MANIFEST_SIGNATURE);
    ota_test_key_free(&other);
}

static void test_second_trusted_key_is_used(void **state) {
    (void)state;
    ota_test_key_t other;
    ota_test_key_generate(&other);
    ota_trusted_key_t keys[2] = {other.trusted, test_key.trusted};
    char buf[BUF_BYTES];
    size_t len = signed_manifest(buf, "2.0.0", 3);
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(buf, len, keys, 2, &m), OTA_OK);
    ota_test_key_free(&other);
}

/* Replaces the first occurrence of `from` with `to` in a body (unsigned part). */
static size_t edit_body(char *buf, size_t len, const char *from, const char *to) {
    char *at = strstr(buf, from);
    assert_non_null(at);
    size_t from_len = strlen(from);
    size_t to_len = strlen(to);
    memmove(at + to_len, at + from_len, len - (size_t)(at - buf) - from_len + 1);
    memcpy(at, to, to_len);
    return len - from_len + to_len;
}

static ota_status_t parse_edited(const char *from, const char *to) {
    char buf[BUF_BYTES];
    size_t len = ota_test_manifest_body(buf, sizeof(buf), "2.0.0", 5, &test_key);
    len = edit_body(buf, len, from, to);
    len = ota_test_sign(&test_key, buf, len, sizeof(buf));
    ota_manifest_t m;
    return ota_manifest_verify(buf, len, &test_key.trusted, 1, &m);
}

static void test_malformed_fields(void **state) {
    (void)state;
    assert_int_equal(parse_edited("format=1\n", "format=2\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("version=2.0.0\n", "version=2.0\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("sequence=5\n", "sequence=05\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("sequence=5\n", "sequence=4294967296\n"),
                     OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("sequence=5\n", "sequence=-5\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("chip_id=9\n", "chip_id=65536\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("size=812345\n", "size=0\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("sha256=0011", "sha256=0A11"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("sha256=0011", "sha256=00"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("rollback=0\n", "rollback=yes\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("created=2026-11-28T16:50:00Z\n", "created=2026-11-28 16:50\n"),
                     OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("project=csi_sensor\n", "project=\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("notes=fix", "notes=\tfix"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("chip_id=9\n", "chip_id=9\r\n"), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("chip_id=9\n", "Chip_id=9\n"), OTA_ERR_MANIFEST_FORMAT);
    /* duplicate and missing keys */
    assert_int_equal(parse_edited("chip_id=9\n", "chip_id=9\nchip_id=9\n"),
                     OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("rollback=0\n", ""), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(parse_edited("chip_id=9\n", "chip_id\n"), OTA_ERR_MANIFEST_FORMAT);
    /* an unknown key is signed like the rest and ignored */
    assert_int_equal(parse_edited("chip_id=9\n", "chip_id=9\nchannel=beta\n"), OTA_OK);
    /* a valid signed rollback */
    assert_int_equal(parse_edited("rollback=0\n", "rollback=1\n"), OTA_OK);
}

static void test_notes_limit(void **state) {
    (void)state;
    char notes[260];
    memset(notes, 'n', 200);
    strcpy(notes + 200, "\n");
    char from[] = "notes=fix CSI timestamps\n";
    char to[300];
    snprintf(to, sizeof(to), "notes=%s", notes);
    assert_int_equal(parse_edited(from, to), OTA_OK);
    memset(notes, 'n', 201);
    strcpy(notes + 201, "\n");
    snprintf(to, sizeof(to), "notes=%s", notes);
    assert_int_equal(parse_edited(from, to), OTA_ERR_MANIFEST_FORMAT);
}

/* docs/manifest.md: bytes that are not UTF-8 are refused (as the host parser does). */
static void test_notes_must_be_utf8(void **state) {
    (void)state;
    const char *from = "notes=fix CSI timestamps\n";
    assert_int_equal(parse_edited(from, "notes=caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa1\n"),
                     OTA_OK);
    static const char *const bad[] = {
        "notes=\xff\n",             /* never a UTF-8 byte */
        "notes=caf\xe9\n",          /* Latin-1 */
        "notes=\xc0\xaf\n",         /* overlong '/' */
        "notes=\xe0\x80\xaf\n",     /* overlong, 3 bytes */
        "notes=\xed\xa0\x80\n",     /* UTF-16 surrogate */
        "notes=\xf4\x90\x80\x80\n", /* above U+10FFFF */
        "notes=\xe2\x82\n",         /* truncated sequence */
        "notes=\x80"
        "abc\n", /* lone continuation byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse_edited(from, bad[i]), OTA_ERR_MANIFEST_FORMAT);
    }
}

static void test_structure(void **state) {
    (void)state;
    char buf[BUF_BYTES];
    size_t len = signed_manifest(buf, "2.0.0", 9);
    ota_manifest_t m;
    /* no final newline */
    assert_int_equal(ota_manifest_parse(buf, len - 1, &m), OTA_ERR_MANIFEST_FORMAT);
    /* a line after signature= */
    memcpy(buf + len, "extra=1\n", 9);
    assert_int_equal(ota_manifest_parse(buf, len + 8, &m), OTA_ERR_MANIFEST_FORMAT);
    /* NUL inside */
    len = signed_manifest(buf, "2.0.0", 9);
    buf[20] = '\0';
    assert_int_equal(ota_manifest_parse(buf, len, &m), OTA_ERR_MANIFEST_FORMAT);
    /* too long */
    char big[OTA_MANIFEST_MAX_BYTES + 2];
    memset(big, 'a', sizeof(big));
    big[sizeof(big) - 1] = '\n';
    assert_int_equal(ota_manifest_parse(big, sizeof(big), &m), OTA_ERR_MANIFEST_FORMAT);
    assert_int_equal(ota_manifest_parse("", 0, &m), OTA_ERR_MANIFEST_FORMAT);
}

static void test_truncated_signature(void **state) {
    (void)state;
    char buf[BUF_BYTES];
    size_t len = signed_manifest(buf, "2.0.0", 9);
    buf[len - 3] = '\n'; /* 126 hex digits */
    ota_manifest_t m;
    assert_int_equal(ota_manifest_parse(buf, len - 2, &m), OTA_ERR_MANIFEST_FORMAT);
}

static void test_zero_signature_rejected(void **state) {
    (void)state;
    char buf[BUF_BYTES];
    size_t len = signed_manifest(buf, "2.0.0", 9);
    char *sig = strstr(buf, "signature=") + 10;
    memset(sig, '0', 128);
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(buf, len, &test_key.trusted, 1, &m),
                     OTA_ERR_MANIFEST_SIGNATURE);
}

/* Any single changed byte anywhere in a signed manifest is refused (and never crashes). */
static void test_every_single_byte_mutation_is_refused(void **state) {
    (void)state;
    char original[BUF_BYTES];
    size_t len = signed_manifest(original, "2.0.0", 77);
    ota_manifest_t m;
    assert_int_equal(ota_manifest_verify(original, len, &test_key.trusted, 1, &m), OTA_OK);
    for (int i = 0; i < 3000; i++) {
        char copy[BUF_BYTES];
        memcpy(copy, original, len);
        size_t at = ota_port_random_u32() % len;
        char value = (char)(ota_port_random_u32() & 0xFF);
        if (value == copy[at]) {
            continue;
        }
        copy[at] = value;
        ota_status_t status = ota_manifest_verify(copy, len, &test_key.trusted, 1, &m);
        assert_true(status == OTA_ERR_MANIFEST_FORMAT || status == OTA_ERR_MANIFEST_SIGNATURE ||
                    status == OTA_ERR_MANIFEST_KEY);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_vector_verifies),
        cmocka_unit_test(test_python_vector_one_bit_flipped_fails),
        cmocka_unit_test(test_generated_key_roundtrip),
        cmocka_unit_test(test_unknown_key_id),
        cmocka_unit_test(test_signature_by_other_key),
        cmocka_unit_test(test_second_trusted_key_is_used),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_notes_limit),
        cmocka_unit_test(test_notes_must_be_utf8),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_truncated_signature),
        cmocka_unit_test(test_zero_signature_rejected),
        cmocka_unit_test(test_every_single_byte_mutation_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
