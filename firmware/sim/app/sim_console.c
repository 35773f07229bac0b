/* sim_console.c — the device console's commands on the virtual ESP32-S3's stdin. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_log.h"
#include "sim_app.h"

#define SIM_STATUS_JSON_MAX 2048

static void sim_console_log(ota_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sim_console_log(ota_log_level_t level, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    ota_port_log(level, "console", fmt, args);
    va_end(args);
}

static void sim_console_help(void) {
    sim_console_log(OTA_LOG_INFO,
                    "commands: version | ota check | ota status | ota url <manifest-url> | "
                    "reboot | selftest fail-next | exit");
}

bool sim_console_execute(sim_app_t *app, const char *line) {
    while (*line == ' ' || *line == '\t') {
        line++;
    }
    if (*line == '\0') {
        return true;
    }
    if (strcmp(line, "version") == 0) {
        sim_console_log(OTA_LOG_INFO, "version %s (partition %s)", app->client->running_version,
                        app->partition_label);
    } else if (strcmp(line, "ota check") == 0) {
        ota_status_t status = ota_agent_check_now(app->client);
        sim_console_log(status == OTA_OK ? OTA_LOG_INFO : OTA_LOG_WARN, "ota check: %s",
                        ota_status_to_reason(status));
    } else if (strcmp(line, "ota status") == 0) {
        char json[SIM_STATUS_JSON_MAX];
        ota_agent_status_json(app->client, json, sizeof(json));
        printf("%s\n", json);
    } else if (strncmp(line, "ota url ", 8) == 0) {
        const char *url = line + 8;
        ota_status_t status = ota_agent_set_manifest_url(app->client, url);
        if (status == OTA_OK) {
            sim_console_log(OTA_LOG_INFO, "manifest url: %s", url);
        } else {
            sim_console_log(OTA_LOG_ERROR, "ota url: %s: expected an absolute http(s) URL",
                            ota_status_to_reason(status));
        }
    } else if (strcmp(line, "reboot") == 0) {
        sim_console_log(OTA_LOG_INFO, "rebooting");
        ota_port_reboot();
    } else if (strcmp(line, "selftest fail-next") == 0) {
#ifdef OTA_AGENT_TEST_HOOKS
        ota_status_t status = ota_agent_fail_next_selftest(app->client);
        sim_console_log(status == OTA_OK ? OTA_LOG_INFO : OTA_LOG_ERROR, "selftest fail-next: %s",
                        ota_status_to_reason(status));
#else
        sim_console_log(OTA_LOG_ERROR, "selftest fail-next: not in this build");
#endif
    } else if (strcmp(line, "help") == 0) {
        sim_console_help();
    } else if (strcmp(line, "exit") == 0) {
        sim_console_log(OTA_LOG_INFO, "exit");
        return false;
    } else {
        sim_console_log(OTA_LOG_ERROR, "unknown command: %s", line);
        sim_console_help();
    }
    return true;
}
