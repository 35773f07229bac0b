/*
 * esp_console.c — components/console's command registry and stdio REPL on the virtual
 * board's UART (stdin/stdout).
 *
 * The REPL task reads stdin one byte at a time, so bytes after a line stay in the "UART
 * FIFO" (the pipe) across esp_restart(). It answers like esp_console_repl_chip.c:
 * "Unrecognized command", "Command returned non-zero error code: 0x1 (ESP_FAIL)". The
 * prompt is printed only when stdin is a terminal (ESP-IDF's REPL shows it on every
 * console; a test harness reading lines would see it glued to the next line).
 *
 * The virtual board's power switch sits on the same UART: the line `exit`, and the end of
 * stdin, power the board off (exit status 0) — hardware, not a firmware command.
 */
#define _POSIX_C_SOURCE 200809L
#include "esp_console.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "esp_log.h"
#include "freertos/task.h"
#include "sim_board.h"

#define CONSOLE_COMMANDS_MAX 16
#define CONSOLE_ARGS_MAX 8
#define CONSOLE_LINE_MAX 1024

struct esp_console_repl_s {
    char prompt[32];
};

#define CONSOLE_PENDING_ENV "CSI_OTA_SIM_CONSOLE_PENDING"

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
/* Held while a line is assembled from bytes already read, and while it runs: a reset from
 * another task waits for it (sim_console_before_restart), so a command is never cut in half
 * and the bytes of an unfinished line are handed to the next boot's REPL. */
static pthread_mutex_t s_line_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t s_repl_thread;
static bool s_repl_running;
static char s_line[CONSOLE_LINE_MAX];
static size_t s_line_len;
static esp_console_cmd_t s_commands[CONSOLE_COMMANDS_MAX];
static size_t s_command_count;
static struct esp_console_repl_s s_repl;

esp_err_t esp_console_cmd_register(const esp_console_cmd_t *cmd) {
    if (cmd == NULL || cmd->command == NULL || cmd->func == NULL ||
        strchr(cmd->command, ' ') != NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_lock);
    size_t i = 0;
    while (i < s_command_count && strcmp(s_commands[i].command, cmd->command) != 0) {
        i++;
    }
    if (i == CONSOLE_COMMANDS_MAX) {
        pthread_mutex_unlock(&s_lock);
        return ESP_ERR_NO_MEM;
    }
    s_commands[i] = *cmd;
    if (i == s_command_count) {
        s_command_count++;
    }
    pthread_mutex_unlock(&s_lock);
    return ESP_OK;
}

static int console_help(int argc, char **argv) {
    (void)argc;
    (void)argv;
    pthread_mutex_lock(&s_lock);
    for (size_t i = 0; i < s_command_count; i++) {
        const esp_console_cmd_t *cmd = &s_commands[i];
        printf("%s %s\n  %s\n\n", cmd->command, cmd->hint != NULL ? cmd->hint : "",
               cmd->help != NULL ? cmd->help : "");
    }
    pthread_mutex_unlock(&s_lock);
    return 0;
}

esp_err_t esp_console_register_help_command(void) {
    const esp_console_cmd_t help = {
        .command = "help",
        .help = "Print the summary of all registered commands",
        .func = console_help,
    };
    return esp_console_cmd_register(&help);
}

/* esp_console_split_argv: spaces separate, double quotes group, backslash escapes. */
static size_t console_split(char *line, char **argv, size_t argv_size) {
    size_t argc = 0;
    char *p = line;
    while (*p != '\0' && argc < argv_size - 1) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        char *out = p;
        argv[argc++] = out;
        bool quoted = false;
        while (*p != '\0' && (quoted || (*p != ' ' && *p != '\t'))) {
            if (*p == '"') {
                quoted = !quoted;
                p++;
            } else if (*p == '\\' && p[1] != '\0') {
                *out++ = p[1];
                p += 2;
            } else {
                *out++ = *p++;
            }
        }
        if (*p != '\0') {
            p++;
        }
        *out = '\0';
    }
    argv[argc] = NULL;
    return argc;
}

esp_err_t esp_console_run(const char *cmdline, int *cmd_ret) {
    if (cmdline == NULL || cmd_ret == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    char line[CONSOLE_LINE_MAX];
    snprintf(line, sizeof(line), "%s", cmdline);
    char *argv[CONSOLE_ARGS_MAX + 1];
    size_t argc = console_split(line, argv, CONSOLE_ARGS_MAX + 1);
    if (argc == 0) {
        return ESP_ERR_INVALID_ARG;
    }
    esp_console_cmd_func_t func = NULL;
    pthread_mutex_lock(&s_lock);
    for (size_t i = 0; i < s_command_count; i++) {
        if (strcmp(s_commands[i].command, argv[0]) == 0) {
            func = s_commands[i].func;
        }
    }
    pthread_mutex_unlock(&s_lock);
    if (func == NULL) {
        return ESP_ERR_NOT_FOUND;
    }
    *cmd_ret = func((int)argc, argv);
    return ESP_OK;
}

esp_err_t esp_console_new_repl_stdio(const esp_console_repl_config_t *repl_config,
                                     esp_console_repl_t **ret_repl) {
    if (repl_config == NULL || ret_repl == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    snprintf(s_repl.prompt, sizeof(s_repl.prompt), "%s",
             repl_config->prompt != NULL ? repl_config->prompt : "esp>");
    *ret_repl = &s_repl;
    return ESP_OK;
}

void sim_console_before_restart(void) {
    if (!s_repl_running) {
        return;
    }
    bool mine = pthread_equal(pthread_self(), s_repl_thread) != 0;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2;
    bool locked = !mine && pthread_mutex_timedlock(&s_line_lock, &deadline) == 0;
    if (s_line_len > 0 && (mine || locked)) {
        s_line[s_line_len] = '\0';
        setenv(CONSOLE_PENDING_ENV, mine ? "" : s_line, 1);
    }
    /* The lock is never released: the process is replaced. */
}

/* Runs one complete line (s_line_lock held). */
static void console_run_line(esp_console_repl_t *repl, char *line) {
    (void)repl;
    size_t len = strlen(line);
    if (len > 0 && line[len - 1] == '\r') {
        line[len - 1] = '\0';
    }
    if (strcmp(line, "exit") == 0) {
        ESP_LOGI("sim", "exit: powering off");
        sim_board_power_off(0);
    }
    int ret = 0;
    esp_err_t err = esp_console_run(line, &ret);
    sim_board_stdout_lock();
    if (err == ESP_ERR_NOT_FOUND) {
        printf("Unrecognized command\n");
    } else if (err == ESP_OK && ret != ESP_OK) {
        printf("Command returned non-zero error code: 0x%x (%s)\n", ret, esp_err_to_name(ret));
    }
    fflush(stdout);
    sim_board_stdout_unlock();
}

static void console_repl_task(void *arg) {
    esp_console_repl_t *repl = arg;
    bool tty = isatty(STDIN_FILENO) != 0;
    const char *pending = getenv(CONSOLE_PENDING_ENV);
    pthread_mutex_lock(&s_line_lock);
    if (pending != NULL) {
        snprintf(s_line, sizeof(s_line), "%s", pending);
        s_line_len = strlen(s_line);
        unsetenv(CONSOLE_PENDING_ENV);
    }
    pthread_mutex_unlock(&s_line_lock);
    for (;;) {
        if (tty && s_line_len == 0) {
            printf("%s ", repl->prompt);
            fflush(stdout);
        }
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        pthread_mutex_lock(&s_line_lock);
        if (n <= 0) {
            if (s_line_len > 0) {
                s_line[s_line_len] = '\0';
                s_line_len = 0;
                console_run_line(repl, s_line);
            }
            ESP_LOGI("sim", "console closed; powering off");
            sim_board_power_off(0);
        }
        if (c == '\n') {
            s_line[s_line_len] = '\0';
            s_line_len = 0;
            console_run_line(repl, s_line);
        } else if (s_line_len + 1 < sizeof(s_line)) {
            s_line[s_line_len++] = c;
        }
        pthread_mutex_unlock(&s_line_lock);
    }
}

esp_err_t esp_console_start_repl(esp_console_repl_t *repl) {
    if (repl == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    TaskHandle_t task = NULL;
    if (xTaskCreate(console_repl_task, "console_repl", 4096, repl, 2, &task) != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    s_repl_thread = (pthread_t)(uintptr_t)task;
    s_repl_running = true;
    return ESP_OK;
}
