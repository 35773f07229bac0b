/*
 * esp_console.h — components/console's command registry and its stdio REPL on the
 * virtual board's stdin/stdout (the UART). Lines are split into argv like
 * esp_console_split_argv (spaces separate, double quotes group).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*esp_console_cmd_func_t)(int argc, char **argv);

typedef struct {
    const char *command;
    const char *help;
    const char *hint;
    esp_console_cmd_func_t func;
    void *argtable;
} esp_console_cmd_t;

typedef struct esp_console_repl_s esp_console_repl_t;

typedef struct {
    uint32_t max_history_len;
    const char *history_save_path;
    uint32_t task_stack_size;
    uint32_t task_priority;
    int task_core_id;
    const char *prompt;
    size_t max_cmdline_length;
} esp_console_repl_config_t;

#define ESP_CONSOLE_REPL_CONFIG_DEFAULT()                                                          \
    {                                                                                              \
        .max_history_len = 32, .history_save_path = NULL, .task_stack_size = 4096,                 \
        .task_priority = 2, .task_core_id = -1, .prompt = NULL, .max_cmdline_length = 0,           \
    }

esp_err_t esp_console_cmd_register(const esp_console_cmd_t *cmd);
esp_err_t esp_console_register_help_command(void);
/* Runs one command line: ESP_ERR_NOT_FOUND if unknown, ESP_ERR_INVALID_ARG if empty. */
esp_err_t esp_console_run(const char *cmdline, int *cmd_ret);
esp_err_t esp_console_new_repl_stdio(const esp_console_repl_config_t *repl_config,
                                     esp_console_repl_t **ret_repl);
esp_err_t esp_console_start_repl(esp_console_repl_t *repl);

#ifdef __cplusplus
}
#endif
