/* ota_manifest.c — strict parser and signature check of the release manifest. */
#include "ota_manifest.h"

#include <string.h>

#include "ota_port.h"
#include "ota_version.h"

/* The keys of format 1, in the order the writer emits them. */
typedef enum {
    MF_FORMAT,
    MF_PROJECT,
    MF_VERSION,
    MF_SEQUENCE,
    MF_CHIP_ID,
    MF_MIN_REV,
    MF_MAX_REV,
    MF_SECURE_VERSION,
    MF_SIZE,
    MF_SHA256,
    MF_ROLLBACK,
    MF_CREATED,
    MF_KEY_ID,
    MF_NOTES,
    MF_SIGNATURE,
    MF_KEY_COUNT,
} ota_manifest_key_t;

static const char *const OTA_MANIFEST_KEYS[MF_KEY_COUNT] = {
    "format",
    "project",
    "version",
    "sequence",
    "chip_id",
    "min_chip_rev_full",
    "max_chip_rev_full",
    "secure_version",
    "size",
    "sha256",
    "rollback",
    "created",
    "key_id",
    "notes",
    "signature",
};

static bool ota_manifest_is_lower_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int ota_manifest_hex_nibble(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool ota_manifest_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_len) {
    if (hex_len != 2 * out_len) {
        return false;
    }
    for (size_t i = 0; i < out_len; i++) {
        int hi = ota_manifest_hex_nibble(hex[2 * i]);
        int lo = ota_manifest_hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return true;
}

void ota_manifest_hex_encode(const uint8_t *data, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0x0F];
    }
    out[2 * len] = '\0';
}

/* Lowercase hex of exactly out_len bytes (the manifest never uses upper case). */
static bool ota_manifest_lower_hex(const char *value, size_t len, uint8_t *out, size_t out_len) {
    for (size_t i = 0; i < len; i++) {
        if (!ota_manifest_is_lower_hex(value[i])) {
            return false;
        }
    }
    return ota_manifest_hex_decode(value, len, out, out_len);
}

/* Decimal without sign or leading zeros, at most max. */
static bool ota_manifest_decimal(const char *value, size_t len, uint32_t max, uint32_t *out) {
    if (len == 0 || len > 10 || (len > 1 && value[0] == '0')) {
        return false;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9') {
            return false;
        }
        n = n * 10u + (uint64_t)(value[i] - '0');
    }
    if (n > max) {
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

static bool ota_manifest_copy_text(const char *value, size_t len, char *out, size_t cap) {
    if (len >= cap) {
        return false;
    }
    memcpy(out, value, len);
    out[len] = '\0';
    return true;
}

/* YYYY-MM-DDTHH:MM:SSZ with digits where digits belong. */
static bool ota_manifest_timestamp(const char *value, size_t len) {
    static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
    if (len != sizeof(pattern) - 1) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        bool ok = pattern[i] == 'd' ? (value[i] >= '0' && value[i] <= '9') : value[i] == pattern[i];
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool ota_manifest_store(ota_manifest_t *m, ota_manifest_key_t key, const char *v,
                               size_t len) {
    uint32_t n = 0;
    ota_version_t version;
    switch (key) {
    case MF_FORMAT:
        return ota_manifest_decimal(v, len, UINT32_MAX, &m->format) &&
               m->format == OTA_MANIFEST_FORMAT_VERSION;
    case MF_PROJECT:
        return len > 0 && ota_manifest_copy_text(v, len, m->project, sizeof(m->project));
    case MF_VERSION:
        return ota_manifest_copy_text(v, len, m->version, sizeof(m->version)) &&
               ota_version_parse(m->version, &version);
    case MF_SEQUENCE:
        return ota_manifest_decimal(v, len, UINT32_MAX, &m->sequence);
    case MF_CHIP_ID:
        if (!ota_manifest_decimal(v, len, UINT16_MAX, &n)) {
            return false;
        }
        m->chip_id = (uint16_t)n;
        return true;
    case MF_MIN_REV:
        if (!ota_manifest_decimal(v, len, UINT16_MAX, &n)) {
            return false;
        }
        m->min_chip_rev_full = (uint16_t)n;
        return true;
    case MF_MAX_REV:
        if (!ota_manifest_decimal(v, len, UINT16_MAX, &n)) {
            return false;
        }
        m->max_chip_rev_full = (uint16_t)n;
        return true;
    case MF_SECURE_VERSION:
        return ota_manifest_decimal(v, len, UINT32_MAX, &m->secure_version);
    case MF_SIZE:
        return ota_manifest_decimal(v, len, UINT32_MAX, &m->size_bytes) && m->size_bytes > 0;
    case MF_SHA256:
        if (!ota_manifest_lower_hex(v, len, m->sha256, sizeof(m->sha256))) {
            return false;
        }
        return ota_manifest_copy_text(v, len, m->sha256_hex, sizeof(m->sha256_hex));
    case MF_ROLLBACK:
        if (len != 1 || (v[0] != '0' && v[0] != '1')) {
            return false;
        }
        m->rollback = v[0] == '1';
        return true;
    case MF_CREATED:
        return ota_manifest_timestamp(v, len) &&
               ota_manifest_copy_text(v, len, m->created, sizeof(m->created));
    case MF_KEY_ID:
        return ota_manifest_lower_hex(v, len, m->key_id, sizeof(m->key_id));
    case MF_NOTES:
        return ota_manifest_copy_text(v, len, m->notes, sizeof(m->notes));
    case MF_SIGNATURE:
        return ota_manifest_lower_hex(v, len, m->signature, sizeof(m->signature));
    case MF_KEY_COUNT:
        break;
    }
    return false;
}

/* Strict UTF-8 (RFC 3629, as Python's decode): no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequence. */
static bool ota_manifest_utf8_valid(const char *data, size_t len) {
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t extra = 0;
        unsigned char lo = 0x80; /* allowed range of the second byte */
        unsigned char hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80; /* overlong */
            hi = c == 0xED ? 0x9F : 0xBF; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            lo = c == 0xF0 ? 0x90 : 0x80; /* overlong */
            hi = c == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
        } else {
            return false; /* 0x80-0xC1 lead, 0xF5-0xFF */
        }
        if (len - i <= extra || s[i + 1] < lo || s[i + 1] > hi) {
            return false;
        }
        for (size_t k = 2; k <= extra; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
                return false;
            }
        }
        i += extra + 1;
    }
    return true;
}

static int ota_manifest_find_key(const char *key, size_t len) {
    for (int i = 0; i < MF_KEY_COUNT; i++) {
        if (strlen(OTA_MANIFEST_KEYS[i]) == len && memcmp(OTA_MANIFEST_KEYS[i], key, len) == 0) {
            return i;
        }
    }
    return -1;
}

ota_status_t ota_manifest_parse(const char *data, size_t len, ota_manifest_t *out) {
    if (data == NULL || out == NULL || len == 0 || len > OTA_MANIFEST_MAX_BYTES ||
        data[len - 1] != '\n' || !ota_manifest_utf8_valid(data, len)) {
        return OTA_ERR_MANIFEST_FORMAT;
    }
    memset(out, 0, sizeof(*out));
    bool seen[MF_KEY_COUNT] = {false};
    size_t pos = 0;
    while (pos < len) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = (size_t)(nl - line); /* nl exists: data ends in '\n' */
        const char *eq = memchr(line, '=', line_len);
        if (eq == NULL || eq == line) {
            return OTA_ERR_MANIFEST_FORMAT;
        }
        size_t key_len = (size_t)(eq - line);
        for (size_t i = 0; i < key_len; i++) {
            char c = line[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
                return OTA_ERR_MANIFEST_FORMAT;
            }
        }
        const char *value = eq + 1;
        size_t value_len = line_len - key_len - 1;
        for (size_t i = 0; i < value_len; i++) {
            unsigned char c = (unsigned char)value[i];
            if (c < 0x20 || c == 0x7F) { /* no control characters (incl. \r, NUL) */
                return OTA_ERR_MANIFEST_FORMAT;
            }
        }
        int key = ota_manifest_find_key(line, key_len);
        if (key < 0) {
            /* Unknown keys are covered by the signature and ignored (forward compatible). */
            pos += line_len + 1;
            continue;
        }
        if (seen[key]) {
            return OTA_ERR_MANIFEST_FORMAT; /* duplicate key */
        }
        seen[key] = true;
        if (key == MF_SIGNATURE) {
            if (nl + 1 != data + len) {
                return OTA_ERR_MANIFEST_FORMAT; /* signature= must be the last line */
            }
            out->signed_len_bytes = pos;
        }
        if (!ota_manifest_store(out, (ota_manifest_key_t)key, value, value_len)) {
            return OTA_ERR_MANIFEST_FORMAT;
        }
        pos += line_len + 1;
    }
    for (int i = 0; i < MF_KEY_COUNT; i++) {
        if (!seen[i]) {
            return OTA_ERR_MANIFEST_FORMAT;
        }
    }
    if (out->min_chip_rev_full > out->max_chip_rev_full && out->max_chip_rev_full != 0) {
        return OTA_ERR_MANIFEST_FORMAT;
    }
    return OTA_OK;
}

static ota_status_t ota_manifest_digest(const char *data, size_t len, uint8_t digest[32]) {
    ota_port_sha256_t *sha = NULL;
    ota_status_t status = ota_port_sha256_begin(&sha);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_sha256_update(sha, data, len);
    if (status != OTA_OK) {
        ota_port_sha256_discard(sha);
        return status;
    }
    return ota_port_sha256_finish(sha, digest);
}

ota_status_t ota_manifest_verify(const char *data, size_t len, const ota_trusted_key_t *keys,
                                 size_t key_count, ota_manifest_t *out) {
    ota_status_t status = ota_manifest_parse(data, len, out);
    if (status != OTA_OK) {
        return status;
    }
    const ota_trusted_key_t *key = NULL;
    for (size_t i = 0; i < key_count; i++) {
        if (memcmp(keys[i].key_id, out->key_id, sizeof(out->key_id)) == 0) {
            key = &keys[i];
            break;
        }
    }
    if (key == NULL) {
        return OTA_ERR_MANIFEST_KEY;
    }
    uint8_t digest[32];
    status = ota_manifest_digest(data, out->signed_len_bytes, digest);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_ecdsa_p256_verify(key->raw, digest, out->signature);
    if (status == OTA_OK) {
        return OTA_OK;
    }
    return status == OTA_ERR_CRYPTO ? OTA_ERR_CRYPTO : OTA_ERR_MANIFEST_SIGNATURE;
}
