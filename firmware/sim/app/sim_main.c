/*
 * sim_main.c — csi-ota-sim, the virtual ESP32-S3.
 *
 *   csi-ota-sim --flash FILE --config FILE [--power-cut-at N] [--chip-rev-full N]
 *               [--time-scale X] [--max-boots N]
 *
 * Boot loop: run the bootloader model on the flash file, "start" the chosen
 * app (ESP-IDF-style boot lines, the image's behaviour marker), confirm or
 * roll back (ota_agent_on_boot), then serve console commands on stdin,
 * poll the OTA client and send the periodic heartbeat (sim_heartbeat.c).
 * A reboot (`reboot`, ota_port_reboot, a panic) drops the port's open
 * handles and longjmps back to the top of the boot loop: same process, same
 * flash file and operation counter, fresh app state — what esp_restart()
 * does to RAM.
 *
 * Exit codes: 0 `exit` or end of stdin; 1 no bootable app; 2 usage/config
 * error; 4 too many boots (a boot loop, bounded by --max-boots);
 * 75 power cut (sim_flash).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota_agent.h"
#include "ota_log.h"
#include "sim_app.h"
#include "sim_bootloader.h"
#include "sim_config.h"
#include "sim_device.h"
#include "sim_flash.h"
#include "sim_ota_ops.h"
#include "sim_port.h"
#include "sim_provisioning.h"

#define SIM_EXIT_NO_APP 1
#define SIM_EXIT_USAGE 2
#define SIM_EXIT_BOOT_LOOP 4
#define SIM_DEFAULT_MAX_BOOTS 20u
#define SIM_POLL_MAX_MS 200
#define SIM_CONSOLE_LINE_MAX 1024
#define SIM_CONSOLE_BUFFER_BYTES 4096

typedef struct {
    const char *flash_path;
    const char *config_path;
    uint64_t power_cut_at;
    int chip_rev_full; /* -1: default */
    double time_scale;
    uint32_t max_boots;
} sim_args_t;

static jmp_buf sim_boot_env;
static sim_args_t sim_args;
static sim_config_t sim_file_config; /* --config, read once */
static sim_config_t sim_config;      /* this boot's: the file + the NVS provisioning image */
static sim_flash_t *sim_flash_chip;
static ota_agent_t sim_client;
static sim_app_t sim_app;
static uint32_t sim_boot_count;
static char sim_console_buf[SIM_CONSOLE_BUFFER_BYTES];
static size_t sim_console_len;
static bool sim_stdin_open = true;

static void sim_usage(const char *why) {
    fprintf(stderr, "csi-ota-sim: %s\n", why);
    fprintf(stderr, "usage: csi-ota-sim --flash FILE --config FILE [--power-cut-at N] "
                    "[--chip-rev-full N] [--time-scale X] [--max-boots N]\n");
    exit(SIM_EXIT_USAGE);
}

static unsigned long long sim_parse_number(const char *flag, const char *value,
                                           unsigned long long max) {
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(value, &end, 10);
    if (value[0] == '-' || value[0] == '\0' || *end != '\0' || errno != 0 || n > max) {
        char why[160];
        snprintf(why, sizeof(why), "%s needs a number up to %llu, got '%s'", flag, max, value);
        sim_usage(why);
    }
    return n;
}

static void sim_parse_args(int argc, char **argv, sim_args_t *args) {
    memset(args, 0, sizeof(*args));
    args->chip_rev_full = -1;
    args->time_scale = 1.0;
    args->max_boots = SIM_DEFAULT_MAX_BOOTS;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0) {
            printf("usage: csi-ota-sim --flash FILE --config FILE [--power-cut-at N] "
                   "[--chip-rev-full N] [--time-scale X] [--max-boots N]\n");
            exit(0);
        }
        if (i + 1 >= argc) {
            char why[120];
            snprintf(why, sizeof(why), "%s needs a value", flag);
            sim_usage(why);
        }
        const char *value = argv[++i];
        if (strcmp(flag, "--flash") == 0) {
            args->flash_path = value;
        } else if (strcmp(flag, "--config") == 0) {
            args->config_path = value;
        } else if (strcmp(flag, "--power-cut-at") == 0) {
            args->power_cut_at = sim_parse_number(flag, value, UINT64_MAX);
        } else if (strcmp(flag, "--chip-rev-full") == 0) {
            args->chip_rev_full = (int)sim_parse_number(flag, value, 0xFFFF);
        } else if (strcmp(flag, "--max-boots") == 0) {
            args->max_boots = (uint32_t)sim_parse_number(flag, value, 100000);
        } else if (strcmp(flag, "--time-scale") == 0) {
            char *end = NULL;
            args->time_scale = strtod(value, &end);
            if (*end != '\0' || !(args->time_scale > 0.0) || args->time_scale > 10000.0) {
                sim_usage("--time-scale needs a number in (0, 10000]");
            }
        } else {
            char why[120];
            snprintf(why, sizeof(why), "unknown option %s", flag);
            sim_usage(why);
        }
    }
    if (args->flash_path == NULL || args->config_path == NULL) {
        sim_usage("--flash and --config are required");
    }
}

static void sim_log(ota_log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sim_log(ota_log_level_t level, const char *tag, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    ota_port_log(level, tag, fmt, args);
    va_end(args);
}

static void sim_reboot_handler(void) {
    longjmp(sim_boot_env, 1);
}

/* Takes the first complete line out of the input buffer; false if there is none. */
static bool sim_console_take_line(char *line, size_t cap) {
    char *nl = memchr(sim_console_buf, '\n', sim_console_len);
    if (nl == NULL) {
        if (sim_console_len == sizeof(sim_console_buf)) {
            sim_console_len = 0; /* an over-long line is dropped */
        }
        return false;
    }
    size_t len = (size_t)(nl - sim_console_buf);
    size_t copy = len < cap - 1 ? len : cap - 1;
    memcpy(line, sim_console_buf, copy);
    line[copy] = '\0';
    if (copy > 0 && line[copy - 1] == '\r') {
        line[copy - 1] = '\0';
    }
    memmove(sim_console_buf, nl + 1, sim_console_len - len - 1);
    sim_console_len -= len + 1;
    return true;
}

/* Reads what stdin has (waiting at most timeout_ms) and runs complete lines.
 * A line is removed from the buffer before it runs, so input queued behind a
 * `reboot` survives the reboot (like bytes in the UART FIFO). */
static void sim_console_poll(int timeout_ms) {
    char line[SIM_CONSOLE_LINE_MAX];
    if (sim_stdin_open && sim_console_len < sizeof(sim_console_buf)) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        bool queued = memchr(sim_console_buf, '\n', sim_console_len) != NULL;
        if (poll(&pfd, 1, queued ? 0 : timeout_ms) > 0) {
            ssize_t n = read(STDIN_FILENO, sim_console_buf + sim_console_len,
                             sizeof(sim_console_buf) - sim_console_len);
            if (n > 0) {
                sim_console_len += (size_t)n;
            } else if (n == 0 || errno != EINTR) {
                sim_stdin_open = false;
            }
        }
    } else if (!sim_stdin_open) {
        ota_port_sleep_ms((uint32_t)timeout_ms);
    }
    while (sim_console_take_line(line, sizeof(line))) {
        if (!sim_console_execute(&sim_app, line)) {
            sim_port_shutdown();
            exit(0);
        }
    }
}

static void sim_print_app_start(const sim_boot_result_t *boot) {
    const ota_app_desc_t *desc = &boot->image.app_desc;
    sim_log(OTA_LOG_INFO, "cpu_start", "Project name:     %s", desc->project_name);
    sim_log(OTA_LOG_INFO, "cpu_start", "App version:      %s", desc->version);
    sim_log(OTA_LOG_INFO, "cpu_start", "ESP-IDF:          %s", desc->idf_ver);
    sim_log(OTA_LOG_INFO, "cpu_start", "Secure version:   %lu",
            (unsigned long)desc->secure_version);
    sim_log(OTA_LOG_INFO, "app", "running partition %s, version %s", boot->partition.label,
            desc->version);
}

/* Runs one boot: bootloader model, app start, confirm/rollback, main loop. */
static int sim_run_boot(void) {
    sim_boot_count++;
    sim_port_mark_boot();
    if (sim_boot_count > sim_args.max_boots) {
        sim_log(OTA_LOG_ERROR, "sim", "boot %lu exceeds --max-boots %lu; stopping",
                (unsigned long)sim_boot_count, (unsigned long)sim_args.max_boots);
        return SIM_EXIT_BOOT_LOOP;
    }
    sim_log(OTA_LOG_INFO, "boot", "ESP-IDF virtual ESP32-S3 2nd stage bootloader (boot %lu)",
            (unsigned long)sim_boot_count);
    sim_boot_result_t boot;
    sim_boot_status_t boot_status = sim_bootloader_boot(&boot);
    if (boot_status != SIM_BOOT_OK) {
        sim_log(OTA_LOG_ERROR, "boot", "no bootable app: %s", sim_boot_status_str(boot_status));
        return SIM_EXIT_NO_APP;
    }
    sim_print_app_start(&boot);
    char why[512];
    sim_provisioning_info_t provisioning;
    if (!sim_provisioning_load(&sim_file_config, sim_flash_chip, &sim_config, &provisioning, why,
                               sizeof(why))) {
        sim_log(OTA_LOG_ERROR, "app", "config: %s", why);
        return SIM_EXIT_USAGE;
    }
    if (provisioning.nvs_settings > 0) {
        sim_log(OTA_LOG_INFO, "app", "provisioning: %u settings from the nvs partition at 0x%lx",
                provisioning.nvs_settings, (unsigned long)provisioning.nvs_offset_bytes);
    } else {
        sim_log(OTA_LOG_INFO, "app", "provisioning: none in nvs; using the config file");
    }
    sim_port_set_ca_cert_pem(sim_config.ca_cert_pem);
    memset(&sim_app, 0, sizeof(sim_app));
    sim_app.config = &sim_config;
    sim_app.client = &sim_client;
    sim_app.app_start_ms = ota_port_monotonic_ms();
    snprintf(sim_app.behaviour, sizeof(sim_app.behaviour), "%s", boot.image.behaviour);
    snprintf(sim_app.partition_label, sizeof(sim_app.partition_label), "%s", boot.partition.label);

    if (strcmp(sim_app.behaviour, "crash_at_boot") == 0) {
        printf(
            "Guru Meditation Error: Core  0 panic'ed (LoadProhibited). Exception was unhandled.\n");
        printf("Rebooting...\n");
        ota_port_reboot(); /* does not return */
    }
    if (strcmp(sim_app.behaviour, "normal") != 0) {
        sim_log(OTA_LOG_WARN, "app", "behaviour marker: %s", sim_app.behaviour);
    }

    ota_agent_config_t client_config = sim_config.client;
    sim_selftest_install(&sim_app, &client_config);
    ota_status_t status = ota_agent_init(&sim_client, &client_config);
    if (status != OTA_OK) {
        sim_log(OTA_LOG_ERROR, "app", "OTA client init failed: %s", ota_status_to_reason(status));
        return SIM_EXIT_USAGE;
    }
    ota_agent_on_boot(&sim_client);
    sim_log(OTA_LOG_INFO, "app", "ready; console commands on stdin");

    for (;;) {
        uint64_t now_ms = ota_port_monotonic_ms();
        uint64_t next_ms = ota_agent_next_check_ms(&sim_client);
        int wait_ms = SIM_POLL_MAX_MS;
        if (next_ms <= now_ms) {
            wait_ms = 0;
        } else if (next_ms - now_ms < (uint64_t)SIM_POLL_MAX_MS) {
            wait_ms = (int)(next_ms - now_ms);
        }
        sim_console_poll(wait_ms);
        ota_agent_poll(&sim_client, ota_port_monotonic_ms());
        sim_app_heartbeat_poll(&sim_app, ota_port_monotonic_ms());
        if (!sim_stdin_open) {
            sim_log(OTA_LOG_INFO, "app", "console closed; exiting");
            return 0;
        }
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    sim_parse_args(argc, argv, &sim_args);
    char why[512];
    if (!sim_config_load(sim_args.config_path, &sim_file_config, why, sizeof(why))) {
        fprintf(stderr, "csi-ota-sim: config: %s\n", why);
        return SIM_EXIT_USAGE;
    }
    sim_flash_t *flash = NULL;
    sim_flash_result_t fr = sim_flash_open(sim_args.flash_path, &flash);
    if (fr != SIM_FLASH_OK) {
        fprintf(stderr, "csi-ota-sim: cannot open flash file %s: %s\n", sim_args.flash_path,
                sim_flash_result_str(fr));
        return SIM_EXIT_USAGE;
    }
    if (sim_args.power_cut_at > 0) {
        sim_flash_set_power_cut(flash, sim_args.power_cut_at, SIM_FLASH_CUT_TORN);
    }
    sim_device_config_t device = sim_device_default_config();
    if (sim_args.chip_rev_full >= 0) {
        device.chip_rev_full = (uint16_t)sim_args.chip_rev_full;
    }
    device.log = ota_port_log;
    sim_device_init(flash, &device);
    sim_flash_chip = flash;

    char kv_dir[SIM_CONFIG_PATH_MAX + 8];
    snprintf(kv_dir, sizeof(kv_dir), "%s.kv", sim_args.flash_path);
    sim_port_config_t port = {
        .kv_dir = kv_dir,
        .ca_cert = sim_file_config.ca_cert,
        .time_scale = sim_args.time_scale,
    };
    if (!sim_port_init(&port)) {
        return SIM_EXIT_USAGE;
    }
    sim_port_set_reboot_handler(sim_reboot_handler);
    setjmp(sim_boot_env); /* every reboot comes back here */
    int code = sim_run_boot();
    sim_port_shutdown();
    sim_flash_close(flash);
    return code;
}
