/* test_ota_url_config.c — URL helpers and the X-Device-Config push. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_url.h"

static void test_origin_and_resolve(void **state) {
    (void)state;
    char out[256];
    assert_true(ota_url_origin("https://ota.local:8080/api/ota/version?x=1", out, sizeof(out)));
    assert_string_equal(out, "https://ota.local:8080");
    assert_true(ota_url_origin("http://[::1]:9000", out, sizeof(out)));
    assert_string_equal(out, "http://[::1]:9000");
    assert_false(ota_url_origin("ftp://x/y", out, sizeof(out)));
    assert_false(ota_url_origin("http:///nohost", out, sizeof(out)));
    assert_true(ota_url_resolve("http://127.0.0.1:5000/api/ota/version", "/api/ota/firmware/ab",
                                out, sizeof(out)));
    assert_string_equal(out, "http://127.0.0.1:5000/api/ota/firmware/ab");
    assert_true(ota_url_resolve("http://a/x", "https://cdn.example/fw.bin", out, sizeof(out)));
    assert_string_equal(out, "https://cdn.example/fw.bin");
    assert_false(ota_url_resolve("http://a/x", "fw.bin", out, sizeof(out)));
    assert_false(ota_url_resolve("http://a/x", "//evil/fw.bin", out, sizeof(out)));
    assert_false(ota_url_resolve("http://a/x", "", out, sizeof(out)));
    char tiny[12];
    assert_false(ota_url_resolve("http://abc/x", "/long/path", tiny, sizeof(tiny)));
}

/* L4 and https-only: the policy ota_agent_http_open() applies to every request. */
static void test_scheme_policy_and_origins(void **state) {
    (void)state;
    assert_true(ota_url_scheme_allowed("https://ota.local/api/ota/version", false));
    assert_false(ota_url_scheme_allowed("http://ota.local/api/ota/version", false));
    assert_true(ota_url_scheme_allowed("http://ota.local/api/ota/version", true));
    assert_false(ota_url_scheme_allowed("ftp://ota.local/x", true));
    assert_false(ota_url_scheme_allowed("https:///nohost", true));
    const char *check = "https://ota.local:8443/api/ota/version?x=1";
    assert_true(ota_url_same_origin(check, "https://ota.local:8443/api/ota/firmware/ab"));
    assert_false(ota_url_same_origin(check, "https://ota.local/api/ota/firmware/ab"));  /* port */
    assert_false(ota_url_same_origin(check, "http://ota.local:8443/api/ota/firmware")); /* scheme */
    assert_false(ota_url_same_origin(check, "https://ota.local:84431/x"));              /* prefix */
    assert_false(ota_url_same_origin(check, "https://cdn.example/fw.bin"));
    assert_false(ota_url_same_origin(check, "/relative"));
}

static void test_pushed_http_urls_need_the_test_option(void **state) {
    (void)state;
    ota_deployment_config_t config = {.version_check_url = "https://a/api/ota/version"};
    const char *push = "version_check_url=http%3A%2F%2Fa%2Fv&update_url=https%3A%2F%2Fa%2Ffw";
    assert_int_equal(ota_config_apply_form(&config, push, false), OTA_CONFIG_UPDATE_URL);
    assert_string_equal(config.version_check_url, "https://a/api/ota/version");
    assert_string_equal(config.update_url, "https://a/fw");
    assert_int_equal(ota_config_apply_form(&config, push, true),
                     OTA_CONFIG_UPDATE_URL | OTA_CONFIG_VERSION_CHECK_URL);
    assert_string_equal(config.version_check_url, "http://a/v");
}

static void test_query_encoding(void **state) {
    (void)state;
    char url[64] = "http://h/v";
    assert_true(ota_url_append_query(url, sizeof(url), "device_id", "csi 01&x"));
    assert_true(ota_url_append_query(url, sizeof(url), "version", "1.0.0-rc.1"));
    assert_string_equal(url, "http://h/v?device_id=csi%2001%26x&version=1.0.0-rc.1");
    char small[16] = "http://h/v";
    assert_false(ota_url_append_query(small, sizeof(small), "device_id", "abc"));
    assert_string_equal(small, "http://h/v"); /* unchanged on failure */
}

static void test_form_decoding(void **state) {
    (void)state;
    const char *cursor = "a=1&&b=x%20y+z&bad&c=%zz&d=%41";
    char key[16];
    char value[16];
    bool too_long = false;
    assert_true(ota_url_form_next(&cursor, key, sizeof(key), value, sizeof(value), &too_long));
    assert_string_equal(key, "a");
    assert_string_equal(value, "1");
    assert_true(ota_url_form_next(&cursor, key, sizeof(key), value, sizeof(value), &too_long));
    assert_string_equal(key, "b");
    assert_string_equal(value, "x y z");
    assert_true(ota_url_form_next(&cursor, key, sizeof(key), value, sizeof(value), &too_long));
    assert_string_equal(key, "d"); /* "bad" (no '=') and "c=%zz" are skipped */
    assert_string_equal(value, "A");
    assert_true(too_long);
    assert_false(ota_url_form_next(&cursor, key, sizeof(key), value, sizeof(value), &too_long));
}

static void test_config_push(void **state) {
    (void)state;
    ota_deployment_config_t config = {
        .update_url = "http://a/fw",
        .version_check_url = "http://a/api/ota/version",
        .check_interval_sec = 3600,
        .auto_update_enabled = true,
        .device_id = "csi_sensor_001",
        .auth_token = "t0",
    };
    uint32_t changed = ota_config_apply_form(
        &config, "check_interval_sec=600&auto_update_enabled=0&device_id=evil&colour=red", true);
    assert_int_equal(changed, OTA_CONFIG_CHECK_INTERVAL | OTA_CONFIG_AUTO_UPDATE);
    assert_int_equal(config.check_interval_sec, 600);
    assert_false(config.auto_update_enabled);
    assert_string_equal(config.device_id, "csi_sensor_001"); /* identity never pushed */
    /* invalid values are ignored, valid ones in the same header applied */
    changed = ota_config_apply_form(
        &config, "check_interval_sec=0&version_check_url=ftp://x&auth_token=t1", true);
    assert_int_equal(changed, OTA_CONFIG_AUTH_TOKEN);
    assert_int_equal(config.check_interval_sec, 600);
    assert_string_equal(config.version_check_url, "http://a/api/ota/version");
    assert_string_equal(config.auth_token, "t1");
    changed =
        ota_config_apply_form(&config, "check_interval_sec=604801&auto_update_enabled=2", true);
    assert_int_equal(changed, 0);
}

static void test_config_form_roundtrip(void **state) {
    (void)state;
    ota_deployment_config_t config = {
        .version_check_url = "http://127.0.0.1:8080/api/ota/version?x=a&b",
        .check_interval_sec = 42,
        .auto_update_enabled = false,
        .device_id = "d",
    };
    char form[512];
    uint32_t mask =
        OTA_CONFIG_VERSION_CHECK_URL | OTA_CONFIG_CHECK_INTERVAL | OTA_CONFIG_AUTO_UPDATE;
    assert_true(ota_config_to_form(&config, mask, form, sizeof(form)));
    ota_deployment_config_t copy = {.device_id = "d", .check_interval_sec = 1};
    assert_int_equal(ota_config_apply_form(&copy, form, true), mask);
    assert_string_equal(copy.version_check_url, config.version_check_url);
    assert_int_equal(copy.check_interval_sec, 42);
    assert_false(copy.auto_update_enabled);
    char tiny[8];
    assert_false(ota_config_to_form(&config, mask, tiny, sizeof(tiny)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin_and_resolve),
        cmocka_unit_test(test_query_encoding),
        cmocka_unit_test(test_form_decoding),
        cmocka_unit_test(test_config_push),
        cmocka_unit_test(test_config_form_roundtrip),
        cmocka_unit_test(test_scheme_policy_and_origins),
        cmocka_unit_test(test_pushed_http_urls_need_the_test_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
