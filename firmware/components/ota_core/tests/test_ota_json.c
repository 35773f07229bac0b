/* test_ota_json.c — status report JSON, the JSON writer and the ack reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_json.h"
#include "ota_status.h"

static void test_report_json_exact(void **state) {
    (void)state;
    ota_agent_report_t report = {
        .seq = 12,
        .state = "rolled_back",
        .reason = "selftest",
        .version = "1.0.0",
        .target_version = "2.0.0",
        .target_sha256 = "ab",
        .manifest_sequence = 17,
        .bytes_written = 0,
    };
    char buf[512];
    size_t len = ota_report_json("csi_sensor_001", &report, buf, sizeof(buf));
    const char *expected =
        "{\"device_id\": \"csi_sensor_001\", \"seq\": 12, \"state\": \"rolled_back\", "
        "\"reason\": \"selftest\", \"version\": \"1.0.0\", \"target_version\": \"2.0.0\", "
        "\"target_sha256\": \"ab\", \"manifest_sequence\": 17, \"bytes_written\": 0}";
    assert_string_equal(buf, expected);
    assert_int_equal(len, strlen(expected));
}

static void test_escaping(void **state) {
    (void)state;
    char buf[128];
    ota_json_t json;
    ota_json_begin(&json, buf, sizeof(buf));
    ota_json_string(&json, "a\"b", "q\"\\\n\x01");
    ota_json_bool(&json, "ok", true);
    ota_json_i64(&json, "slot", -1);
    ota_json_end(&json);
    assert_string_equal(buf,
                        "{\"a\\\"b\": \"q\\\"\\\\\\u000a\\u0001\", \"ok\": true, \"slot\": -1}");
}

static void test_truncation_reports_needed_length(void **state) {
    (void)state;
    char big[128];
    char small[10];
    ota_json_t json;
    ota_json_begin(&json, big, sizeof(big));
    ota_json_string(&json, "phase", "downloading");
    size_t need = ota_json_end(&json);
    ota_json_begin(&json, small, sizeof(small));
    ota_json_string(&json, "phase", "downloading");
    assert_int_equal(ota_json_end(&json), need);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, big, sizeof(small) - 1);
}

static void test_find_ack_seq(void **state) {
    (void)state;
    uint32_t v = 0;
    const char *a = "{\"ack_seq\": 12}";
    assert_true(ota_json_find_u32(a, strlen(a), "ack_seq", &v));
    assert_int_equal(v, 12);
    const char *b = "{\"note\": \"ack_seq\", \"ack_seq\" :\n4294967295 }";
    assert_true(ota_json_find_u32(b, strlen(b), "ack_seq", &v));
    assert_int_equal(v, 4294967295u);
    const char *c = "{\"ack_seq\": 4294967296}";
    assert_false(ota_json_find_u32(c, strlen(c), "ack_seq", &v));
    const char *d = "{\"ack_seq\": \"12\"}";
    assert_false(ota_json_find_u32(d, strlen(d), "ack_seq", &v));
    const char *e = "{\"seq\": 3}";
    assert_false(ota_json_find_u32(e, strlen(e), "ack_seq", &v));
}

static void test_status_reasons(void **state) {
    (void)state;
    assert_string_equal(ota_status_to_reason(OTA_OK), "ok");
    assert_string_equal(ota_status_to_reason(OTA_ERR_IMAGE_DIGEST), "image_digest");
    assert_string_equal(ota_status_to_reason(OTA_ERR_SELFTEST), "selftest");
    assert_string_equal(ota_status_to_reason(OTA_ERR_ROLLED_BACK), "rolled_back");
    assert_string_equal(ota_status_to_reason(OTA_ERR_MANIFEST_REPLAY), "manifest_replay");
    assert_string_equal(ota_status_to_str(OTA_ERR_HTTP_RANGE), "OTA_ERR_HTTP_RANGE");
    assert_string_equal(ota_status_describe(OTA_ERR_DOWNGRADE),
                        "older version without signed rollback");
    assert_string_equal(ota_status_to_reason((ota_status_t)9999), "unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_json_exact),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_truncation_reports_needed_length),
        cmocka_unit_test(test_find_ack_seq),
        cmocka_unit_test(test_status_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
