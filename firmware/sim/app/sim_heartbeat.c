/*
 * sim_heartbeat.c — the virtual device's heartbeat, like firmware/main/heartbeat.c:
 * {"device_id","version","uptime_s","rssi","csi_frames","free_heap","ota_state"}
 * POSTed to /api/devices/<id>/heartbeat on the version-check URL's origin.
 * The self-test's heartbeat hook and the periodic heartbeat of the main loop
 * send the same request. rssi and free_heap are constants of the virtual
 * radio and heap (SIM_HEARTBEAT_RSSI, SIM_HEARTBEAT_FREE_HEAP).
 */
#include <stdarg.h>
#include <stdio.h>

#include "ota_img_state.h"
#include "ota_json.h"
#include "ota_port.h"
#include "sim_app.h"

#define SIM_HEARTBEAT_RSSI (-55)
#define SIM_HEARTBEAT_FREE_HEAP 180000u
#define SIM_HEARTBEAT_JSON_BYTES 400

static void sim_heartbeat_log(ota_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sim_heartbeat_log(ota_log_level_t level, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    ota_port_log(level, "heartbeat", fmt, args);
    va_end(args);
}

ota_status_t sim_app_heartbeat_send(const sim_app_t *app, uint32_t timeout_ms) {
    const ota_deployment_config_t *d = ota_agent_deployment(app->client);
    char path[96];
    char body[SIM_HEARTBEAT_JSON_BYTES];
    if ((size_t)snprintf(path, sizeof(path), "/api/devices/%s/heartbeat", d->device_id) >=
        sizeof(path)) {
        return OTA_ERR_CONFIG;
    }
    ota_json_t json;
    ota_json_begin(&json, body, sizeof(body));
    ota_json_string(&json, "device_id", d->device_id);
    ota_json_string(&json, "version", app->client->running_version);
    ota_json_u64(&json, "uptime_s", (ota_port_monotonic_ms() - app->app_start_ms) / 1000u);
    ota_json_i64(&json, "rssi", SIM_HEARTBEAT_RSSI);
    ota_json_u64(&json, "csi_frames", sim_app_csi_frames(app));
    ota_json_u64(&json, "free_heap", SIM_HEARTBEAT_FREE_HEAP);
    ota_json_string(&json, "ota_state", ota_running_img_state_name());
    if (ota_json_end(&json) >= sizeof(body)) {
        return OTA_ERR_CONFIG;
    }
    return sim_app_controller_request(app, path, body, timeout_ms, true);
}

void sim_app_heartbeat_poll(sim_app_t *app, uint64_t now_ms) {
    uint32_t interval_sec = app->config->heartbeat_interval_sec;
    if (interval_sec == 0 || now_ms < app->next_heartbeat_ms) {
        return;
    }
    ota_status_t status = sim_app_heartbeat_send(app, app->config->client.http_timeout_ms);
    if (status == OTA_OK) {
        sim_heartbeat_log(OTA_LOG_INFO, "sent (version %s, ota_state %s)",
                          app->client->running_version, ota_running_img_state_name());
    } else {
        sim_heartbeat_log(OTA_LOG_WARN, "failed: %s", ota_status_to_reason(status));
    }
    app->next_heartbeat_ms = ota_port_monotonic_ms() + (uint64_t)interval_sec * 1000u;
}
