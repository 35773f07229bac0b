/* test_ota_port_espidf_http_util.c — Content-Range, origins and redirect targets of the
 * ESP-IDF HTTP port (the string handling the device relies on for Range resume). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h> /* after the headers it needs */

#include "ota_port_espidf_http_util.h"

static void assert_range(const char *text, bool ok, int64_t start, int64_t end, int64_t total) {
    ota_port_espidf_http_util_range_t range = {.start = 7, .end = 7, .total = 7};
    assert_int_equal(ota_port_espidf_http_util_content_range(text, &range), ok);
    assert_int_equal(range.start, start);
    assert_int_equal(range.end, end);
    assert_int_equal(range.total, total);
}

static void test_content_range_accepts_the_forms_servers_send(void **state) {
    (void)state;
    assert_range("bytes 4096-8191/200000", true, 4096, 8191, 200000);
    assert_range("bytes 0-0/1", true, 0, 0, 1);
    assert_range("Bytes 10-19/*", true, 10, 19, -1);      /* unit is case-insensitive */
    assert_range("bytes */200000", true, -1, -1, 200000); /* the 416 form */
    assert_range("bytes 5-9/10  ", true, 5, 9, 10);       /* trailing blanks */
}

static void test_content_range_refuses_malformed_values(void **state) {
    (void)state;
    const char *bad[] = {
        "",
        "bytes",
        "items 0-9/10",
        "bytes 9-0/10",                  /* end before start */
        "bytes 0-10/10",                 /* end beyond the total */
        "bytes -5-9/10",                 /* negative */
        "bytes 0-9",                     /* no total */
        "bytes 0-9/10x",                 /* trailing garbage */
        "bytes */*",                     /* says nothing */
        "bytes 0-9/1234567890123456789", /* 19 digits: would overflow */
        "bytes 0-/10",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_range(bad[i], false, -1, -1, -1);
    }
    ota_port_espidf_http_util_range_t range;
    assert_false(ota_port_espidf_http_util_content_range(NULL, &range));
}

static void test_origin_is_scheme_host_and_port(void **state) {
    (void)state;
    char origin[OTA_PORT_ESPIDF_HTTP_UTIL_ORIGIN_MAX_BYTES];
    assert_true(ota_port_espidf_http_util_origin("https://ctl.local:8080/api/ota/version?x=1",
                                                 origin, sizeof(origin)));
    assert_string_equal(origin, "https://ctl.local:8080");
    assert_true(ota_port_espidf_http_util_origin("http://[::1]:8080", origin, sizeof(origin)));
    assert_string_equal(origin, "http://[::1]:8080");
    assert_true(ota_port_espidf_http_util_origin("HTTP://host?q", origin, sizeof(origin)));
    assert_string_equal(origin, "HTTP://host");
    assert_false(ota_port_espidf_http_util_origin("ftp://host/x", origin, sizeof(origin)));
    assert_false(ota_port_espidf_http_util_origin("https:///path", origin, sizeof(origin)));
    assert_false(ota_port_espidf_http_util_origin("https://host/x", origin, 8)); /* too small */
    assert_true(ota_port_espidf_http_util_is_https("HTTPS://x"));
    assert_false(ota_port_espidf_http_util_is_https("http://x"));
}

static void assert_resolves(const char *base, const char *location, const char *expected) {
    char out[256];
    assert_true(ota_port_espidf_http_util_resolve(base, location, out, sizeof(out)));
    assert_string_equal(out, expected);
}

static void test_redirect_targets_resolve_like_a_browser(void **state) {
    (void)state;
    const char *base = "https://ctl.local:8080/api/ota/firmware/abc?device_id=d1";
    assert_resolves(base, "https://cdn.example/f.bin", "https://cdn.example/f.bin");
    assert_resolves(base, "//cdn.example/f.bin", "https://cdn.example/f.bin");
    assert_resolves(base, "/store/f.bin", "https://ctl.local:8080/store/f.bin");
    assert_resolves(base, "def", "https://ctl.local:8080/api/ota/firmware/def");
    assert_resolves("http://h", "x.bin", "http://h/x.bin");
    char out[16];
    assert_false(ota_port_espidf_http_util_resolve(base, "", out, sizeof(out)));
    assert_false(ota_port_espidf_http_util_resolve(base, "/a/very/long/path.bin", out,
                                                   sizeof(out))); /* does not fit */
    assert_false(ota_port_espidf_http_util_resolve("not a url", "/x", out, sizeof(out)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_range_accepts_the_forms_servers_send),
        cmocka_unit_test(test_content_range_refuses_malformed_values),
        cmocka_unit_test(test_origin_is_scheme_host_and_port),
        cmocka_unit_test(test_redirect_targets_resolve_like_a_browser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
