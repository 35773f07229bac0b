/* ota_report.c — status reports: persisted, numbered, repeated until acknowledged. */
#include <stdio.h>
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_json.h"
#include "ota_log.h"

#define OTA_REPORT_BODY_MAX_BYTES 1024
#define OTA_REPORT_ACK_MAX_BYTES 512

static void ota_report_copy(char *dst, size_t cap, const char *src) {
    if (src == NULL) {
        src = "";
    }
    size_t len = strlen(src);
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* POSTs the current report; marks it acknowledged on {"ack_seq": seq}. */
static ota_status_t ota_report_send(ota_agent_t *client) {
    ota_agent_report_t *report = &client->report;
    char url[OTA_URL_MAX_BYTES];
    if (!ota_agent_controller_url(client, OTA_STATUS_PATH, url, sizeof(url))) {
        return OTA_ERR_CONFIG;
    }
    char body[OTA_REPORT_BODY_MAX_BYTES];
    size_t body_len =
        ota_report_json(client->config.deployment.device_id, report, body, sizeof(body));
    if (body_len >= sizeof(body)) {
        return OTA_ERR_NO_MEM;
    }
    ota_port_http_request_t request = {
        .method = "POST",
        .url = url,
        .content_type = "application/json",
        .body = body,
        .body_len = body_len,
        .range_start = -1,
        .timeout_ms = client->config.http_timeout_ms,
    };
    ota_port_http_t *http = NULL;
    ota_port_http_response_t response;
    ota_status_t status = ota_agent_http_open(client, &request, &http, &response);
    if (status != OTA_OK) {
        return status;
    }
    if (response.status != 200) {
        ota_port_http_close(http);
        return ota_agent_http_error(response.status);
    }
    char answer[OTA_REPORT_ACK_MAX_BYTES];
    size_t answer_len = 0;
    status = ota_agent_http_read_body(http, answer, sizeof(answer), &answer_len);
    ota_port_http_close(http);
    if (status != OTA_OK) {
        return status;
    }
    uint32_t ack_seq = 0;
    if (!ota_json_find_u32(answer, answer_len, "ack_seq", &ack_seq) || ack_seq != report->seq) {
        return OTA_ERR_HTTP_STATUS;
    }
    report->acked = true;
    OTA_LOGI("report %lu %s (%s) acknowledged", (unsigned long)report->seq, report->state,
             report->reason);
    return ota_store_save_report(report);
}

ota_status_t ota_report(ota_agent_t *client, const char *state, ota_status_t reason,
                        const ota_report_details_t *details) {
    ota_agent_report_t *report = &client->report;
    report->seq++;
    ota_report_copy(report->state, sizeof(report->state), state);
    ota_report_copy(report->reason, sizeof(report->reason), ota_status_to_reason(reason));
    const char *version =
        details != NULL && details->version != NULL ? details->version : client->running_version;
    ota_report_copy(report->version, sizeof(report->version), version);
    ota_report_copy(report->target_version, sizeof(report->target_version),
                    details != NULL ? details->target_version : NULL);
    ota_report_copy(report->target_sha256, sizeof(report->target_sha256),
                    details != NULL ? details->target_sha256 : NULL);
    report->manifest_sequence = details != NULL ? details->manifest_sequence : 0;
    report->bytes_written = details != NULL ? details->bytes_written : 0;
    report->acked = false;
    ota_status_t status = ota_store_save_report(report);
    if (status != OTA_OK) {
        OTA_LOGE("could not persist report %lu: %s", (unsigned long)report->seq,
                 ota_status_to_str(status));
    }
    ota_status_t sent = ota_report_send(client);
    if (sent != OTA_OK) {
        OTA_LOGW("report %lu %s (%s) not delivered: %s; will repeat", (unsigned long)report->seq,
                 report->state, report->reason, ota_status_to_reason(sent));
    }
    return status;
}

ota_status_t ota_report_flush(ota_agent_t *client) {
    if (client->report.seq == 0 || client->report.acked) {
        return OTA_OK;
    }
    ota_status_t status = ota_report_send(client);
    if (status != OTA_OK) {
        OTA_LOGW("report %lu %s (%s) not delivered: %s; will repeat",
                 (unsigned long)client->report.seq, client->report.state, client->report.reason,
                 ota_status_to_reason(status));
    }
    return status;
}
