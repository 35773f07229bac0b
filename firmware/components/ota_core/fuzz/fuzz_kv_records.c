/* fuzz_kv_records.c — the client's "key=value\n" records read back from the KV store
 * (NVS: flash that a power cut or an attacker with flash access may have damaged). */
#include <string.h>

#include "fuzz_support.h"
#include "ota_agent_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_port_kv_load(data, size);
    ota_download_record_t download;
    ota_pending_record_t pending;
    ota_agent_report_t report;
    ota_retry_record_t retry;
    ota_config_prev_record_t prev;
    uint32_t value = 0;
    char text[OTA_URL_MAX_BYTES];
    (void)ota_store_load_download(&download);
    (void)ota_store_load_pending(&pending);
    (void)ota_store_load_report(&report);
    (void)ota_store_load_retry(&retry);
    (void)ota_store_load_config_prev(&prev);
    (void)ota_store_load_u32(OTA_KV_HIGHEST_SEQ, &value);
    (void)ota_store_load_text(OTA_KV_CONFIG, text, sizeof(text));
    fuzz_port_kv_load(NULL, 0);
    return 0;
}
