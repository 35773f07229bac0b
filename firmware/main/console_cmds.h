/*
 * console_cmds.h — the esp_console REPL: version, ota check|status|url, reboot, and in
 * test builds (CONFIG_CSI_OTA_TEST_HOOKS) selftest fail-next. docs/firmware.md.
 */
#pragma once

#include "esp_err.h"

/* Registers the commands and starts the REPL on the console (stdio). */
esp_err_t console_cmds_start(void);
