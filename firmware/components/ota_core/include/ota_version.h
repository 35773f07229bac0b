/*
 * ota_version.h — semantic versions (MAJOR.MINOR.PATCH[-pre][+build]) as in
 * esp_app_desc_t.version and the manifest's `version`. A leading "v" is
 * accepted; build metadata is ignored; pre-releases sort before the release.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_VERSION_MAX_BYTES 32

typedef struct {
    uint32_t major;
    uint32_t minor;
    uint32_t patch;
    char prerelease[OTA_VERSION_MAX_BYTES]; /* "" for a release */
} ota_version_t;

/* false when text is not a semantic version. */
bool ota_version_parse(const char *text, ota_version_t *out);

/* <0, 0, >0 like strcmp, by semver 2.0 precedence. */
int ota_version_compare(const ota_version_t *a, const ota_version_t *b);

#ifdef __cplusplus
}
#endif
