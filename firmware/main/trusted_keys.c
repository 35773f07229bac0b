/*
 * trusted_keys.c — the release keys built into the firmware. The format and
 * its checks are the core's (ota_trusted_keys.c); this file only logs and
 * skips what the core rejects.
 */
#include "trusted_keys.h"

#include "esp_log.h"
#include "ota_trusted_keys.h"

static const char *TAG = "trusted_keys";

static void trusted_keys_log_entry(void *ctx, size_t index, const char *entry, size_t len,
                                   ota_status_t status) {
    (void)ctx;
    (void)len;
    switch (status) {
    case OTA_OK:
        ESP_LOGI(TAG, "trusted release key %.16s", entry);
        break;
    case OTA_ERR_CONFIG:
        ESP_LOGE(TAG, "malformed trusted key entry %u, ignored", (unsigned)index);
        break;
    case OTA_ERR_MANIFEST_KEY:
        ESP_LOGE(TAG, "trusted key %.16s: id is not SHA-256(key)[0:8], ignored", entry);
        break;
    default:
        ESP_LOGE(TAG, "trusted key %.16s: cannot check its id (%s), ignored", entry,
                 ota_status_to_str(status));
        break;
    }
}

size_t trusted_keys_parse(const char *text, ota_trusted_key_t *keys, size_t cap) {
    ota_trusted_keys_result_t result;
    (void)ota_trusted_keys_parse_list(text, keys, cap, trusted_keys_log_entry, NULL, &result);
    if (result.truncated) {
        ESP_LOGE(TAG, "more than %u trusted keys, extra ignored", (unsigned)cap);
    }
    if (result.count == 0) {
        ESP_LOGW(TAG, "no trusted release key: every manifest will be refused");
    }
    return result.count;
}
