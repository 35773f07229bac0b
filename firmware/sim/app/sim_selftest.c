/*
 * sim_selftest.c — the post-update self-test hooks of the virtual device.
 * Same four checks as the real firmware: Wi-Fi up, controller reachable,
 * CSI frames arriving, heartbeat acknowledged (the same request as the
 * periodic heartbeat of sim_heartbeat.c). An image carrying the
 * fail_selftest marker captures no CSI frames, so that hook fails.
 */
#include <stdio.h>
#include <string.h>

#include "ota_port.h"
#include "ota_url.h"
#include "sim_app.h"

#define SIM_CSI_FRAMES_PER_SEC 100u
#define SIM_SELFTEST_MIN_FRAMES 10u
#define SIM_SELFTEST_POLL_MS 20u

uint64_t sim_app_csi_frames(const sim_app_t *app) {
    if (strcmp(app->behaviour, "fail_selftest") == 0) {
        return 0;
    }
    return (ota_port_monotonic_ms() - app->app_start_ms) * SIM_CSI_FRAMES_PER_SEC / 1000u;
}

static ota_status_t sim_selftest_wifi(void *ctx, uint32_t timeout_ms) {
    (void)ctx;
    (void)timeout_ms;
    return OTA_OK; /* the virtual station is associated as soon as the app runs */
}

/* One request to the controller's origin; any HTTP status proves reachability
 * unless want_2xx, when the answer must be a success. */
ota_status_t sim_app_controller_request(const sim_app_t *app, const char *path, const char *body,
                                        uint32_t timeout_ms, bool want_2xx) {
    const ota_deployment_config_t *d = ota_agent_deployment(app->client);
    char url[600];
    if (!ota_url_resolve(d->version_check_url, path, url, sizeof(url))) {
        return OTA_ERR_CONFIG;
    }
    if (!ota_url_scheme_allowed(url, app->config->client.allow_plain_http)) {
        return OTA_ERR_INSECURE_URL; /* as the core: no token over plain http */
    }
    ota_port_http_request_t request = {
        .method = body != NULL ? "POST" : "GET",
        .url = url,
        .bearer_token = d->auth_token,
        .content_type = body != NULL ? "application/json" : NULL,
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
        .range_start = -1,
        .timeout_ms = timeout_ms,
    };
    ota_port_http_t *http = NULL;
    ota_port_http_response_t response;
    ota_status_t status = ota_port_http_open(&request, &http, &response);
    if (status != OTA_OK) {
        return status;
    }
    ota_port_http_close(http);
    if (want_2xx && (response.status < 200 || response.status > 299)) {
        return OTA_ERR_HTTP_STATUS;
    }
    return response.status > 0 ? OTA_OK : OTA_ERR_HTTP_CONNECT;
}

static ota_status_t sim_selftest_controller(void *ctx, uint32_t timeout_ms) {
    return sim_app_controller_request(ctx, "/healthz", NULL, timeout_ms, false);
}

static ota_status_t sim_selftest_csi(void *ctx, uint32_t timeout_ms) {
    const sim_app_t *app = ctx;
    uint64_t deadline_ms = ota_port_monotonic_ms() + timeout_ms;
    uint64_t first = sim_app_csi_frames(app);
    for (;;) { /* frames are checked once more after the deadline: a stall is not a failure */
        bool late = ota_port_monotonic_ms() >= deadline_ms;
        if (sim_app_csi_frames(app) - first >= SIM_SELFTEST_MIN_FRAMES) {
            return OTA_OK;
        }
        if (late) {
            return OTA_ERR_TIMEOUT;
        }
        ota_port_sleep_ms(SIM_SELFTEST_POLL_MS);
    }
}

static ota_status_t sim_selftest_heartbeat(void *ctx, uint32_t timeout_ms) {
    return sim_app_heartbeat_send(ctx, timeout_ms);
}

void sim_selftest_install(sim_app_t *app, ota_agent_config_t *config) {
    uint32_t timeout_ms = app->config->selftest_timeout_ms;
    const ota_selftest_hook_t hooks[] = {
        {"wifi", sim_selftest_wifi, timeout_ms},
        {"controller", sim_selftest_controller, timeout_ms},
        {"csi_frames", sim_selftest_csi, timeout_ms},
        {"heartbeat", sim_selftest_heartbeat, timeout_ms},
    };
    config->selftest_count = sizeof(hooks) / sizeof(hooks[0]);
    memcpy(config->selftests, hooks, sizeof(hooks));
    config->selftest_ctx = app;
}
