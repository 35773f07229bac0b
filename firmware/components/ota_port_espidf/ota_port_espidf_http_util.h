/*
 * ota_port_espidf_http_util.h — the string handling of the HTTP port (Content-Range,
 * origins, redirect targets). Plain C without ESP-IDF headers, so the host runs its
 * tests (test_host/, scripts/check_espidf_port.sh).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTA_PORT_ESPIDF_HTTP_UTIL_ORIGIN_MAX_BYTES 160

/* A parsed Content-Range; every field -1 when absent or malformed. */
typedef struct {
    int64_t start;
    int64_t end;
    int64_t total; /* -1 for an unknown ("*") total */
} ota_port_espidf_http_util_range_t;

/* "bytes START-END/TOTAL", the same with an asterisk for TOTAL (unknown length), or the
 * 416 form with an asterisk for START-END. Returns false (and all -1) for anything else. */
bool ota_port_espidf_http_util_content_range(const char *text,
                                             ota_port_espidf_http_util_range_t *range);

/* "https://host:8080/path?x" -> "https://host:8080"; false if not http(s):// or too long. */
bool ota_port_espidf_http_util_origin(const char *url, char *origin, size_t cap);

bool ota_port_espidf_http_util_is_https(const char *url);

/* Resolves a Location header (absolute, //host/…, /path or relative) against the URL it
 * answered. False if unusable or longer than cap. */
bool ota_port_espidf_http_util_resolve(const char *base, const char *location, char *out,
                                       size_t cap);
