/* ota_http_head.c — response-head parsing shared by the ports (bounded, never truncating). */
#include "ota_http_head.h"

#include <stdint.h>
#include <string.h>

#define OTA_HTTP_HEAD_MAX_DIGITS 18 /* fits int64_t without overflow */

void ota_http_head_reset(ota_port_http_response_t *response) {
    memset(response, 0, sizeof(*response));
    response->content_length = -1;
    response->content_range_start = -1;
    response->content_range_end = -1;
    response->content_range_total = -1;
}

static char ota_http_head_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool ota_http_head_name_is(const char *name, size_t len, const char *lower) {
    if (strlen(lower) != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (ota_http_head_lower(name[i]) != lower[i]) {
            return false;
        }
    }
    return true;
}

/* Decimal at *pos (advanced); false when none, or longer than 18 digits. */
static bool ota_http_head_decimal(const char *s, size_t len, size_t *pos, int64_t *value) {
    int64_t v = 0;
    size_t start = *pos;
    while (*pos < len && s[*pos] >= '0' && s[*pos] <= '9') {
        if (*pos - start >= OTA_HTTP_HEAD_MAX_DIGITS) {
            return false;
        }
        v = v * 10 + (s[*pos] - '0');
        (*pos)++;
    }
    if (*pos == start) {
        return false;
    }
    *value = v;
    return true;
}

static bool ota_http_head_is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool ota_http_head_status_line(const char *line, size_t len, int *status) {
    while (len > 0 && ota_http_head_is_blank(line[len - 1])) {
        len--;
    }
    if (len < 5 || memcmp(line, "HTTP/", 5) != 0) {
        return false;
    }
    size_t pos = 5;
    while (pos < len && line[pos] != ' ') {
        pos++;
    }
    size_t spaces = pos;
    while (pos < len && line[pos] == ' ') {
        pos++;
    }
    if (pos == spaces || pos + 3 > len) {
        return false;
    }
    int code = 0;
    for (size_t i = 0; i < 3; i++) {
        char c = line[pos + i];
        if (c < '0' || c > '9') {
            return false;
        }
        code = code * 10 + (c - '0');
    }
    if (pos + 3 < len && line[pos + 3] != ' ') {
        return false; /* "2000" is not a status code */
    }
    *status = code;
    return true;
}

/* "bytes START-END/TOTAL" (TOTAL may be '*'); anything else leaves the fields -1. */
static void ota_http_head_content_range(ota_port_http_response_t *r, const char *v, size_t len) {
    int64_t start = -1;
    int64_t end = -1;
    int64_t total = -1;
    size_t pos = 6;
    if (len < 6 || !ota_http_head_name_is(v, 6, "bytes ") ||
        !ota_http_head_decimal(v, len, &pos, &start) || pos >= len || v[pos++] != '-' ||
        !ota_http_head_decimal(v, len, &pos, &end) || pos >= len || v[pos++] != '/' ||
        end < start) {
        return;
    }
    if (pos < len && v[pos] == '*') {
        pos++;
    } else if (!ota_http_head_decimal(v, len, &pos, &total) || end >= total) {
        return;
    }
    if (pos != len) {
        return;
    }
    r->content_range_start = start;
    r->content_range_end = end;
    r->content_range_total = total;
}

/* Copies value into dst when it fits (with its NUL); else dst = "" and *too_long. */
static void ota_http_head_store(char *dst, size_t cap, const char *value, size_t len,
                                bool *too_long) {
    if (len >= cap) {
        dst[0] = '\0';
        if (too_long != NULL) {
            *too_long = true;
        }
        return;
    }
    memcpy(dst, value, len);
    dst[len] = '\0';
}

void ota_http_head_header(ota_port_http_response_t *response, const char *name, size_t name_len,
                          const char *value, size_t value_len) {
    while (value_len > 0 && ota_http_head_is_blank(value[0])) {
        value++;
        value_len--;
    }
    while (value_len > 0 && ota_http_head_is_blank(value[value_len - 1])) {
        value_len--;
    }
    if (memchr(value, '\0', value_len) != NULL) {
        return; /* a NUL inside a header value: not a value we can store */
    }
    if (ota_http_head_name_is(name, name_len, "content-length")) {
        size_t pos = 0;
        int64_t length = -1;
        if (ota_http_head_decimal(value, value_len, &pos, &length) && pos == value_len) {
            response->content_length = length;
        }
    } else if (ota_http_head_name_is(name, name_len, "content-range")) {
        ota_http_head_content_range(response, value, value_len);
    } else if (ota_http_head_name_is(name, name_len, "etag")) {
        if (value_len >= 2 && value[0] == 'W' && value[1] == '/') {
            value += 2;
            value_len -= 2;
        }
        if (value_len >= 2 && value[0] == '"' && value[value_len - 1] == '"') {
            value++;
            value_len -= 2;
        }
        ota_http_head_store(response->etag, sizeof(response->etag), value, value_len, NULL);
    } else if (ota_http_head_name_is(name, name_len, "x-firmware-url")) {
        ota_http_head_store(response->firmware_url, sizeof(response->firmware_url), value,
                            value_len, &response->firmware_url_too_long);
    } else if (ota_http_head_name_is(name, name_len, "x-device-config")) {
        ota_http_head_store(response->device_config, sizeof(response->device_config), value,
                            value_len, &response->device_config_too_long);
    }
}

bool ota_http_head_line(ota_port_http_response_t *response, const char *line, size_t len) {
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        ota_http_head_reset(response); /* a new response (after a redirect or 100) */
        int status = 0;
        if (!ota_http_head_status_line(line, len, &status)) {
            return false;
        }
        response->status = status;
        return true;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line) {
        return false;
    }
    size_t name_len = (size_t)(colon - line);
    ota_http_head_header(response, line, name_len, colon + 1, len - name_len - 1);
    return true;
}
