/* test_ota_http_head.c — the response-head parser both ports use (I1, H1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <stdlib.h>
#include <string.h>

#include "ota_http_head.h"

/* The line in a heap block of exactly its length, as libcurl hands it over (no NUL). */
static bool head_line(ota_port_http_response_t *r, const char *text) {
    size_t len = strlen(text);
    char *line = malloc(len > 0 ? len : 1);
    assert_non_null(line);
    memcpy(line, text, len);
    bool ok = ota_http_head_line(r, line, len);
    free(line);
    return ok;
}

static void test_status_lines(void **state) {
    (void)state;
    int status = 0;
    assert_true(ota_http_head_status_line("HTTP/1.1 200 OK\r\n", 17, &status));
    assert_int_equal(status, 200);
    assert_true(ota_http_head_status_line("HTTP/2 204", 10, &status));
    assert_int_equal(status, 204);
    status = -1;
    /* I1: a status line of only blanks after the version, with nothing after it in memory. */
    assert_false(ota_http_head_status_line("HTTP/1.1 ", 9, &status));
    assert_false(ota_http_head_status_line("HTTP/1.1 \t \r\n", 13, &status));
    assert_false(ota_http_head_status_line("HTTP/1.1 20", 11, &status));
    assert_false(ota_http_head_status_line("HTTP/1.1 2000", 13, &status));
    assert_false(ota_http_head_status_line("HTTP/1.1 -20 x", 14, &status));
    assert_false(ota_http_head_status_line("HTTP/1.1", 8, &status));
    assert_int_equal(status, -1);
    ota_port_http_response_t r;
    ota_http_head_reset(&r);
    assert_false(head_line(&r, "HTTP/1.1 "));
    assert_int_equal(r.status, 0);
}

static void test_headers_fill_the_response(void **state) {
    (void)state;
    ota_port_http_response_t r;
    ota_http_head_reset(&r);
    assert_int_equal(r.content_length, -1);
    assert_true(head_line(&r, "HTTP/1.1 206 Partial Content\r\n"));
    assert_true(head_line(&r, "content-length: 100\r\n"));
    assert_true(head_line(&r, "Content-Range: bytes 100-199/1000\r\n"));
    assert_true(head_line(&r, "ETag: W/\"abc\"\r\n"));
    assert_true(head_line(&r, "X-Firmware-Url:   /api/ota/firmware/ab \r\n"));
    assert_true(head_line(&r, "X-Device-Config: check_interval_sec=600\r\n"));
    assert_false(head_line(&r, "\r\n"));
    assert_int_equal(r.status, 206);
    assert_int_equal(r.content_length, 100);
    assert_int_equal(r.content_range_start, 100);
    assert_int_equal(r.content_range_end, 199);
    assert_int_equal(r.content_range_total, 1000);
    assert_string_equal(r.etag, "abc");
    assert_string_equal(r.firmware_url, "/api/ota/firmware/ab");
    assert_string_equal(r.device_config, "check_interval_sec=600");
    assert_false(r.device_config_too_long || r.firmware_url_too_long);
    /* Malformed numbers leave the fields unknown. */
    assert_true(head_line(&r, "Content-Length: 12x\r\n"));
    assert_true(head_line(&r, "Content-Range: bytes 5-4/10\r\n"));
    assert_int_equal(r.content_length, 100);
    assert_int_equal(r.content_range_start, 100);
    /* A redirect's next head starts from scratch. */
    assert_true(head_line(&r, "HTTP/1.1 200 OK\r\n"));
    assert_int_equal(r.content_length, -1);
    assert_string_equal(r.device_config, "");
}

/* H1: a value that does not fit is refused whole and flagged, never truncated. */
static void test_over_long_values_are_refused(void **state) {
    (void)state;
    ota_port_http_response_t r;
    ota_http_head_reset(&r);
    char line[2048];
    size_t fits = OTA_PORT_DEVICE_CONFIG_MAX_BYTES - 1;
    strcpy(line, "X-Device-Config: ");
    memset(line + strlen(line), 'a', fits);
    line[17 + fits] = '\0';
    assert_true(head_line(&r, line));
    assert_int_equal(strlen(r.device_config), fits);
    assert_false(r.device_config_too_long);
    strcat(line, "b");
    assert_true(head_line(&r, line));
    assert_string_equal(r.device_config, "");
    assert_true(r.device_config_too_long);
    strcpy(line, "X-Firmware-Url: https://cdn/");
    memset(line + strlen(line), 'f', OTA_PORT_FIRMWARE_URL_MAX_BYTES);
    line[28 + OTA_PORT_FIRMWARE_URL_MAX_BYTES] = '\0';
    assert_true(head_line(&r, line));
    assert_string_equal(r.firmware_url, "");
    assert_true(r.firmware_url_too_long);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_lines),
        cmocka_unit_test(test_headers_fill_the_response),
        cmocka_unit_test(test_over_long_values_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
