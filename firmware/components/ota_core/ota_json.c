/* ota_json.c — minimal JSON object writer with string escaping, and ack_seq reader. */
#include "ota_json.h"

#include <stdio.h>
#include <string.h>

static void ota_json_put(ota_json_t *json, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (json->len + 1 < json->cap) {
            json->buf[json->len] = s[i];
        }
        json->len++;
    }
    if (json->cap > 0) {
        size_t end = json->len < json->cap ? json->len : json->cap - 1;
        json->buf[end] = '\0';
    }
}

static void ota_json_puts(ota_json_t *json, const char *s) {
    ota_json_put(json, s, strlen(s));
}

static void ota_json_quoted(ota_json_t *json, const char *s) {
    ota_json_put(json, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            ota_json_put(json, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            ota_json_puts(json, esc);
        } else {
            ota_json_put(json, (const char *)p, 1);
        }
    }
    ota_json_put(json, "\"", 1);
}

static void ota_json_key(ota_json_t *json, const char *key) {
    if (!json->first) {
        ota_json_put(json, ", ", 2);
    }
    json->first = false;
    ota_json_quoted(json, key);
    ota_json_put(json, ": ", 2);
}

void ota_json_begin(ota_json_t *json, char *buf, size_t cap) {
    json->buf = buf;
    json->cap = cap;
    json->len = 0;
    json->first = true;
    if (cap > 0) {
        buf[0] = '\0';
    }
    ota_json_put(json, "{", 1);
}

void ota_json_string(ota_json_t *json, const char *key, const char *value) {
    ota_json_key(json, key);
    ota_json_quoted(json, value);
}

void ota_json_u64(ota_json_t *json, const char *key, uint64_t value) {
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
    ota_json_key(json, key);
    ota_json_puts(json, num);
}

void ota_json_i64(ota_json_t *json, const char *key, int64_t value) {
    char num[24];
    snprintf(num, sizeof(num), "%lld", (long long)value);
    ota_json_key(json, key);
    ota_json_puts(json, num);
}

void ota_json_bool(ota_json_t *json, const char *key, bool value) {
    ota_json_key(json, key);
    ota_json_puts(json, value ? "true" : "false");
}

void ota_json_raw(ota_json_t *json, const char *key, const char *raw_value) {
    ota_json_key(json, key);
    ota_json_puts(json, raw_value);
}

size_t ota_json_end(ota_json_t *json) {
    ota_json_put(json, "}", 1);
    return json->len;
}

bool ota_json_find_u32(const char *text, size_t len, const char *key, uint32_t *out) {
    size_t key_len = strlen(key);
    for (size_t i = 0; i + key_len + 2 <= len; i++) {
        if (text[i] != '"' || memcmp(text + i + 1, key, key_len) != 0 ||
            text[i + 1 + key_len] != '"') {
            continue;
        }
        size_t p = i + key_len + 2;
        while (p < len &&
               (text[p] == ' ' || text[p] == '\t' || text[p] == '\n' || text[p] == '\r')) {
            p++;
        }
        if (p >= len || text[p] != ':') {
            continue;
        }
        p++;
        while (p < len &&
               (text[p] == ' ' || text[p] == '\t' || text[p] == '\n' || text[p] == '\r')) {
            p++;
        }
        uint64_t value = 0;
        size_t digits = 0;
        while (p < len && text[p] >= '0' && text[p] <= '9' && digits < 11) {
            value = value * 10u + (uint64_t)(text[p] - '0');
            p++;
            digits++;
        }
        if (digits == 0 || value > UINT32_MAX) {
            return false;
        }
        *out = (uint32_t)value;
        return true;
    }
    return false;
}
