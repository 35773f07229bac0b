/*
 * console_cmds.c — console commands; they hand work to the OTA task and print one line.
 */
#include "console_cmds.h"

#include <stdio.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_console.h"
#include "esp_log.h"
#include "esp_system.h"
#include "ota_client.h"
#include "ota_img_state.h"
#include "sdkconfig.h"

static const char *TAG = "console";

#define CONSOLE_STATUS_BYTES 1600 /* ota_client status JSON + ,"busy":true */

static int console_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    const esp_app_desc_t *app = esp_app_get_description();
    printf("%s %s (ESP-IDF %s, state %s)\n", app->project_name, app->version, app->idf_ver,
           ota_running_img_state_name());
    return 0;
}

static int console_ota_usage(void) {
    printf("usage: ota check | ota status | ota url <manifest-url>\n");
    return 1;
}

static int console_ota(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "check") == 0) {
        esp_err_t err = ota_client_request_check();
        printf("%s\n", err == ESP_OK ? "ota check requested" : esp_err_to_name(err));
        return err == ESP_OK ? 0 : 1;
    }
    if (argc == 2 && strcmp(argv[1], "status") == 0) {
        static char json[CONSOLE_STATUS_BYTES];
        ota_client_status_json(json, sizeof(json));
        printf("%s\n", json);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "url") == 0) {
        esp_err_t err = ota_client_set_manifest_url(argv[2]);
        if (err == ESP_ERR_INVALID_ARG) {
            printf("ota url: expected an http:// or https:// URL of at most 255 characters\n");
            return 1;
        }
        printf("%s\n", err == ESP_OK ? "ota url set" : esp_err_to_name(err));
        return err == ESP_OK ? 0 : 1;
    }
    return console_ota_usage();
}

static int console_reboot(int argc, char **argv) {
    (void)argc;
    (void)argv;
    ESP_LOGI(TAG, "reboot requested from the console");
    esp_restart();
    return 0;
}

#if CONFIG_CSI_OTA_TEST_HOOKS
static int console_selftest(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "fail-next") != 0) {
        printf("usage: selftest fail-next\n");
        return 1;
    }
    esp_err_t err = ota_client_fail_next_selftest();
    printf("%s\n", err == ESP_OK ? "next self-test will fail" : esp_err_to_name(err));
    return err == ESP_OK ? 0 : 1;
}
#endif

static esp_err_t console_register(const char *command, const char *help, const char *hint,
                                  esp_console_cmd_func_t func) {
    const esp_console_cmd_t cmd = {
        .command = command,
        .help = help,
        .hint = hint,
        .func = func,
    };
    return esp_console_cmd_register(&cmd);
}

esp_err_t console_cmds_start(void) {
    esp_err_t err = esp_console_register_help_command();
    if (err == ESP_OK) {
        err = console_register("version", "Print the running firmware version", NULL,
                               console_version);
    }
    if (err == ESP_OK) {
        err = console_register("ota",
                               "ota check: check for an update now; ota status: print the OTA "
                               "client's state as JSON; ota url <url>: set the manifest URL",
                               "check|status|url <manifest-url>", console_ota);
    }
    if (err == ESP_OK) {
        err = console_register("reboot", "Restart the device", NULL, console_reboot);
    }
#if CONFIG_CSI_OTA_TEST_HOOKS
    if (err == ESP_OK) {
        err = console_register("selftest", "Test builds: make the next post-update self-test fail",
                               "fail-next", console_selftest);
    }
#endif
    if (err != ESP_OK) {
        return err;
    }
    esp_console_repl_t *repl = NULL;
    esp_console_repl_config_t repl_config = ESP_CONSOLE_REPL_CONFIG_DEFAULT();
    repl_config.prompt = "csi>";
    err = esp_console_new_repl_stdio(&repl_config, &repl);
    if (err == ESP_OK) {
        err = esp_console_start_repl(repl);
    }
    return err;
}
