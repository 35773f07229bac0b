/* ota_version.c — semantic version parsing and precedence (semver 2.0). */
#include "ota_version.h"

#include <string.h>

static bool ota_version_is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool ota_version_is_ident_char(char c) {
    return ota_version_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* One numeric component: digits, no leading zero (except "0"), fits u32. */
static const char *ota_version_parse_number(const char *p, uint32_t *out) {
    if (!ota_version_is_digit(*p)) {
        return NULL;
    }
    if (p[0] == '0' && ota_version_is_digit(p[1])) {
        return NULL;
    }
    uint64_t value = 0;
    while (ota_version_is_digit(*p)) {
        value = value * 10u + (uint64_t)(*p - '0');
        if (value > UINT32_MAX) {
            return NULL;
        }
        p++;
    }
    *out = (uint32_t)value;
    return p;
}

static bool ota_version_all_digits(const char *s, size_t len);

/* Dot-separated identifiers, each non-empty; stops at '+' or end. A numeric pre-release
 * identifier with a leading zero ("01") is invalid (semver 2.0 rule 9), as on the host
 * (csi_ota.controller.semver), so both order versions alike; build metadata may have them. */
static const char *ota_version_scan_identifiers(const char *p, bool numeric_leading_zero_ok) {
    for (;;) {
        const char *start = p;
        while (ota_version_is_ident_char(*p)) {
            p++;
        }
        if (p == start) {
            return NULL;
        }
        size_t len = (size_t)(p - start);
        if (!numeric_leading_zero_ok && len > 1 && start[0] == '0' &&
            ota_version_all_digits(start, len)) {
            return NULL;
        }
        if (*p != '.') {
            return p;
        }
        p++;
    }
}

bool ota_version_parse(const char *text, ota_version_t *out) {
    if (text == NULL || out == NULL || strlen(text) >= OTA_VERSION_MAX_BYTES) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    const char *p = text;
    if (*p == 'v') {
        p++;
    }
    p = ota_version_parse_number(p, &out->major);
    if (p == NULL || *p++ != '.') {
        return false;
    }
    p = ota_version_parse_number(p, &out->minor);
    if (p == NULL || *p++ != '.') {
        return false;
    }
    p = ota_version_parse_number(p, &out->patch);
    if (p == NULL) {
        return false;
    }
    if (*p == '-') {
        const char *pre = p + 1;
        p = ota_version_scan_identifiers(pre, false);
        if (p == NULL) {
            return false;
        }
        memcpy(out->prerelease, pre, (size_t)(p - pre));
        out->prerelease[p - pre] = '\0';
    }
    if (*p == '+') {
        p = ota_version_scan_identifiers(p + 1, true);
        if (p == NULL) {
            return false;
        }
    }
    return *p == '\0';
}

static bool ota_version_all_digits(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (!ota_version_is_digit(s[i])) {
            return false;
        }
    }
    return len > 0;
}

/* Compares one pre-release identifier of each side (semver 2.0 rule 11). */
static int ota_version_compare_ident(const char *a, size_t a_len, const char *b, size_t b_len) {
    bool a_num = ota_version_all_digits(a, a_len);
    bool b_num = ota_version_all_digits(b, b_len);
    if (a_num && b_num) {
        if (a_len != b_len) { /* no leading zeros expected; longer is larger */
            return a_len < b_len ? -1 : 1;
        }
        int c = memcmp(a, b, a_len);
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    if (a_num != b_num) {
        return a_num ? -1 : 1; /* numeric identifiers sort first */
    }
    size_t n = a_len < b_len ? a_len : b_len;
    int c = memcmp(a, b, n);
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return a_len == b_len ? 0 : (a_len < b_len ? -1 : 1);
}

static int ota_version_compare_prerelease(const char *a, const char *b) {
    if (a[0] == '\0' || b[0] == '\0') {
        if (a[0] == b[0]) {
            return 0;
        }
        return a[0] == '\0' ? 1 : -1; /* a release outranks its pre-releases */
    }
    for (;;) {
        size_t a_len = strcspn(a, ".");
        size_t b_len = strcspn(b, ".");
        int c = ota_version_compare_ident(a, a_len, b, b_len);
        if (c != 0) {
            return c;
        }
        a += a_len;
        b += b_len;
        if (*a == '\0' || *b == '\0') {
            if (*a == *b) {
                return 0;
            }
            return *a == '\0' ? -1 : 1; /* fewer identifiers sort first */
        }
        a++;
        b++;
    }
}

int ota_version_compare(const ota_version_t *a, const ota_version_t *b) {
    if (a->major != b->major) {
        return a->major < b->major ? -1 : 1;
    }
    if (a->minor != b->minor) {
        return a->minor < b->minor ? -1 : 1;
    }
    if (a->patch != b->patch) {
        return a->patch < b->patch ? -1 : 1;
    }
    return ota_version_compare_prerelease(a->prerelease, b->prerelease);
}
