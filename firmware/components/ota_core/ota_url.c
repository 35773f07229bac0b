/* ota_url.c — origin / resolve / query / form decoding for the OTA client. */
#include "ota_url.h"

#include "ota_manifest.h"

#include <stdio.h>
#include <string.h>

static size_t ota_url_scheme_len(const char *url) {
    if (strncmp(url, "http://", 7) == 0) {
        return 7;
    }
    if (strncmp(url, "https://", 8) == 0) {
        return 8;
    }
    return 0;
}

bool ota_url_is_absolute_http(const char *url) {
    if (url == NULL) {
        return false;
    }
    size_t scheme = ota_url_scheme_len(url);
    return scheme > 0 && url[scheme] != '\0' && url[scheme] != '/';
}

bool ota_url_scheme_allowed(const char *url, bool allow_plain_http) {
    if (!ota_url_is_absolute_http(url)) {
        return false;
    }
    return strncmp(url, "https://", 8) == 0 || allow_plain_http;
}

bool ota_url_same_origin(const char *a, const char *b) {
    if (!ota_url_is_absolute_http(a) || !ota_url_is_absolute_http(b)) {
        return false;
    }
    size_t a_len = ota_url_scheme_len(a) + strcspn(a + ota_url_scheme_len(a), "/?#");
    size_t b_len = ota_url_scheme_len(b) + strcspn(b + ota_url_scheme_len(b), "/?#");
    return a_len == b_len && memcmp(a, b, a_len) == 0;
}

bool ota_url_origin(const char *url, char *out, size_t cap) {
    if (!ota_url_is_absolute_http(url)) {
        return false;
    }
    size_t scheme = ota_url_scheme_len(url);
    size_t end = scheme + strcspn(url + scheme, "/?#");
    if (end + 1 > cap) {
        return false;
    }
    memcpy(out, url, end);
    out[end] = '\0';
    return true;
}

bool ota_url_resolve(const char *base, const char *ref, char *out, size_t cap) {
    if (ref == NULL || ref[0] == '\0') {
        return false;
    }
    if (ota_url_is_absolute_http(ref)) {
        if (strlen(ref) + 1 > cap) {
            return false;
        }
        memcpy(out, ref, strlen(ref) + 1);
        return true;
    }
    if (ref[0] != '/' || ref[1] == '/') {
        return false;
    }
    if (!ota_url_origin(base, out, cap)) {
        return false;
    }
    size_t origin_len = strlen(out);
    size_t ref_len = strlen(ref);
    if (origin_len + ref_len + 1 > cap) {
        return false;
    }
    memcpy(out + origin_len, ref, ref_len + 1);
    return true;
}

static bool ota_url_unreserved(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

bool ota_url_append_query(char *url, size_t cap, const char *key, const char *value) {
    size_t len = strlen(url);
    char sep = strchr(url, '?') != NULL ? '&' : '?';
    int n = snprintf(url + len, cap - len, "%c%s=", sep, key);
    if (n < 0 || (size_t)n >= cap - len) {
        url[len] = '\0';
        return false;
    }
    size_t pos = len + (size_t)n;
    for (const char *p = value; *p != '\0'; p++) {
        if (ota_url_unreserved(*p)) {
            if (pos + 1 >= cap) {
                url[len] = '\0';
                return false;
            }
            url[pos++] = *p;
        } else {
            if (pos + 3 >= cap) {
                url[len] = '\0';
                return false;
            }
            snprintf(url + pos, 4, "%%%02X", (unsigned char)*p);
            pos += 3;
        }
    }
    url[pos] = '\0';
    return true;
}

/* Decodes [s, s+n) into out; false if it does not fit or an escape is malformed. */
static bool ota_url_decode(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n) { /* needs two hex digits */
                return false;
            }
            int hi = ota_manifest_hex_nibble(s[i + 1]);
            int lo = ota_manifest_hex_nibble(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            c = (char)((hi << 4) | lo);
            i += 2;
        }
        if (o + 1 >= cap || c == '\0') {
            return false;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

bool ota_url_form_next(const char **cursor, char *key, size_t key_cap, char *value,
                       size_t value_cap, bool *too_long) {
    const char *p = *cursor;
    while (*p == '&') {
        p++;
    }
    while (*p != '\0') {
        size_t pair_len = strcspn(p, "&");
        const char *eq = memchr(p, '=', pair_len);
        const char *next = p + pair_len;
        *cursor = next;
        if (eq != NULL && eq != p && ota_url_decode(p, (size_t)(eq - p), key, key_cap) &&
            ota_url_decode(eq + 1, pair_len - (size_t)(eq - p) - 1, value, value_cap)) {
            return true;
        }
        if (too_long != NULL) {
            *too_long = true;
        }
        p = next;
        while (*p == '&') {
            p++;
        }
    }
    *cursor = p;
    return false;
}
