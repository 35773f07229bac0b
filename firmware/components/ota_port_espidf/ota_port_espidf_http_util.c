/*
 * ota_port_espidf_http_util.c — Content-Range parsing and URL handling for the HTTP port.
 */
#include "ota_port_espidf_http_util.h"

#include <stdio.h>
#include <string.h>

static char http_util_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive "text starts with prefix" (prefix is lower case). */
static bool http_util_has_prefix(const char *text, const char *prefix) {
    for (; *prefix != '\0'; text++, prefix++) {
        if (http_util_lower(*text) != *prefix) {
            return false;
        }
    }
    return true;
}

/* Reads a non-negative decimal of at most 18 digits (no overflow); NULL if none. */
static const char *http_util_decimal(const char *p, int64_t *value) {
    int64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > 18) {
            return NULL;
        }
        v = v * 10 + (*p - '0');
        p++;
    }
    if (digits == 0) {
        return NULL;
    }
    *value = v;
    return p;
}

bool ota_port_espidf_http_util_content_range(const char *text,
                                             ota_port_espidf_http_util_range_t *range) {
    range->start = -1;
    range->end = -1;
    range->total = -1;
    if (text == NULL || !http_util_has_prefix(text, "bytes ")) {
        return false;
    }
    const char *p = text + 6;
    int64_t start = -1;
    int64_t end = -1;
    if (*p == '*') {
        p++;
    } else {
        p = http_util_decimal(p, &start);
        if (p == NULL || *p != '-') {
            return false;
        }
        p = http_util_decimal(p + 1, &end);
        if (p == NULL || end < start) {
            return false;
        }
    }
    if (*p != '/') {
        return false;
    }
    p++;
    int64_t total = -1;
    if (*p == '*') {
        if (start < 0) {
            return false; /* neither range nor total known: meaningless */
        }
        p++;
    } else {
        p = http_util_decimal(p, &total);
        if (p == NULL || (end >= 0 && end >= total)) {
            return false;
        }
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p != '\0') {
        return false;
    }
    range->start = start;
    range->end = end;
    range->total = total;
    return true;
}

bool ota_port_espidf_http_util_is_https(const char *url) {
    return url != NULL && http_util_has_prefix(url, "https://");
}

bool ota_port_espidf_http_util_origin(const char *url, char *origin, size_t cap) {
    size_t scheme_len;
    if (ota_port_espidf_http_util_is_https(url)) {
        scheme_len = 8;
    } else if (url != NULL && http_util_has_prefix(url, "http://")) {
        scheme_len = 7;
    } else {
        return false;
    }
    size_t len = scheme_len + strcspn(url + scheme_len, "/?#");
    if (len == scheme_len || len >= cap) {
        return false;
    }
    memcpy(origin, url, len);
    origin[len] = '\0';
    return true;
}

bool ota_port_espidf_http_util_resolve(const char *base, const char *location, char *out,
                                       size_t cap) {
    char origin[OTA_PORT_ESPIDF_HTTP_UTIL_ORIGIN_MAX_BYTES];
    int n;
    if (location == NULL || location[0] == '\0') {
        return false;
    }
    if (strstr(location, "://") != NULL) {
        n = snprintf(out, cap, "%s", location);
    } else if (!ota_port_espidf_http_util_origin(base, origin, sizeof(origin))) {
        return false;
    } else if (location[0] == '/' && location[1] == '/') {
        n = snprintf(out, cap, "%s:%s", ota_port_espidf_http_util_is_https(base) ? "https" : "http",
                     location);
    } else if (location[0] == '/') {
        n = snprintf(out, cap, "%s%s", origin, location);
    } else {
        /* Relative path: replace the last segment of the base path. */
        const char *path = base + strlen(origin);
        size_t dir_len = strcspn(path, "?#");
        while (dir_len > 0 && path[dir_len - 1] != '/') {
            dir_len--;
        }
        n = snprintf(out, cap, "%s%.*s%s%s", origin, (int)dir_len, path, dir_len == 0 ? "/" : "",
                     location);
    }
    return n > 0 && (size_t)n < cap;
}
