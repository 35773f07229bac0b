/* ota_report_json.c — the JSON body of a status report (docs/device-protocol.md). */
#include "ota_agent_internal.h"
#include "ota_json.h"

size_t ota_report_json(const char *device_id, const ota_agent_report_t *report, char *buf,
                       size_t cap) {
    ota_json_t json;
    ota_json_begin(&json, buf, cap);
    ota_json_string(&json, "device_id", device_id);
    ota_json_u64(&json, "seq", report->seq);
    ota_json_string(&json, "state", report->state);
    ota_json_string(&json, "reason", report->reason);
    ota_json_string(&json, "version", report->version);
    ota_json_string(&json, "target_version", report->target_version);
    ota_json_string(&json, "target_sha256", report->target_sha256);
    ota_json_u64(&json, "manifest_sequence", report->manifest_sequence);
    ota_json_u64(&json, "bytes_written", report->bytes_written);
    return ota_json_end(&json);
}
