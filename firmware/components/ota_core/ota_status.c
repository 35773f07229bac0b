/* ota_status.c — names, wire reasons and descriptions of ota_status_t. */
#include "ota_status.h"

#include <stddef.h>

typedef struct {
    ota_status_t status;
    const char *name;        /* "OTA_ERR_IMAGE_DIGEST" */
    const char *description; /* "image SHA-256 differs from the manifest" */
} ota_status_entry_t;

static const ota_status_entry_t OTA_STATUS_TABLE[] = {
#define OTA_STATUS_ENTRY_(name, value, desc) {name, #name, desc},
    OTA_STATUS_LIST(OTA_STATUS_ENTRY_)
#undef OTA_STATUS_ENTRY_
};

#define OTA_STATUS_COUNT (sizeof(OTA_STATUS_TABLE) / sizeof(OTA_STATUS_TABLE[0]))

/* Wire reasons: the enumerator name lower-cased without "OTA_ERR_" ("ok" for OTA_OK). */
static const char *const OTA_STATUS_REASONS[] = {
#define OTA_STATUS_REASON_(name, value, desc) #name,
    OTA_STATUS_LIST(OTA_STATUS_REASON_)
#undef OTA_STATUS_REASON_
};

#define OTA_STATUS_REASON_MAX_BYTES 40
static char ota_status_reason_buf[OTA_STATUS_COUNT][OTA_STATUS_REASON_MAX_BYTES];

static const ota_status_entry_t *ota_status_find(ota_status_t status, size_t *index) {
    for (size_t i = 0; i < OTA_STATUS_COUNT; i++) {
        if (OTA_STATUS_TABLE[i].status == status) {
            *index = i;
            return &OTA_STATUS_TABLE[i];
        }
    }
    return NULL;
}

const char *ota_status_to_str(ota_status_t status) {
    size_t index = 0;
    const ota_status_entry_t *entry = ota_status_find(status, &index);
    return entry != NULL ? entry->name : "OTA_ERR_UNKNOWN";
}

const char *ota_status_describe(ota_status_t status) {
    size_t index = 0;
    const ota_status_entry_t *entry = ota_status_find(status, &index);
    return entry != NULL ? entry->description : "unknown status";
}

const char *ota_status_to_reason(ota_status_t status) {
    size_t index = 0;
    if (ota_status_find(status, &index) == NULL) {
        return "unknown";
    }
    char *out = ota_status_reason_buf[index];
    if (out[0] != '\0') {
        return out;
    }
    const char *name = OTA_STATUS_REASONS[index];
    static const char err_prefix[] = "OTA_ERR_";
    static const char ok_prefix[] = "OTA_";
    size_t skip = 0;
    size_t i = 0;
    while (err_prefix[i] != '\0' && name[i] == err_prefix[i]) {
        i++;
    }
    skip = err_prefix[i] == '\0' ? sizeof(err_prefix) - 1 : sizeof(ok_prefix) - 1;
    /* Lower-case into the cache; out[0] is written last so a concurrent reader
     * sees either an empty slot (and computes it too) or the finished string. */
    char first = '\0';
    size_t n = 0;
    for (const char *p = name + skip; *p != '\0' && n + 1 < OTA_STATUS_REASON_MAX_BYTES; p++) {
        char c = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
        if (n == 0) {
            first = c;
        } else {
            out[n] = c;
        }
        n++;
    }
    out[n] = '\0';
    out[0] = first;
    return out;
}
