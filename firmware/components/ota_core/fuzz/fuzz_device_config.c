#define _POSIX_C_SOURCE 200809L /* strnlen */
/* fuzz_device_config.c — X-Device-Config (form decoding and ota_config_apply_form) and the
 * URL helpers the client runs on what the controller sends (X-Firmware-Url resolution). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "ota_agent_internal.h"
#include "ota_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *form = fuzz_strndup(data, size);
    if (form == NULL) {
        return 0;
    }
    ota_deployment_config_t config;
    memset(&config, 0, sizeof(config));
    strcpy(config.version_check_url, "https://ota.local:8080/api/ota/version");
    strcpy(config.device_id, "csi_fuzz");
    uint32_t mask = ota_config_apply_form(&config, form, size > 0 && (data[0] & 1) != 0);
    char out[OTA_URL_MAX_BYTES];
    (void)ota_config_to_form(&config, mask, out, sizeof(out));
    if (strnlen(config.update_url, sizeof(config.update_url)) == sizeof(config.update_url) ||
        strnlen(config.version_check_url, sizeof(config.version_check_url)) ==
            sizeof(config.version_check_url)) {
        abort();
    }
    /* The same bytes as a URL reference against the check URL, and as an origin. */
    char url[OTA_URL_MAX_BYTES];
    (void)ota_url_resolve(config.version_check_url, form, url, sizeof(url));
    (void)ota_url_origin(form, url, sizeof(url));
    (void)ota_url_same_origin(form, config.version_check_url);
    (void)ota_url_scheme_allowed(form, false);
    char query[64] = "https://h/v";
    (void)ota_url_append_query(query, sizeof(query), "k", form);
    free(form);
    return 0;
}
