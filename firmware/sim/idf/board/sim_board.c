/*
 * sim_board.c — csi-ota-sim, the virtual ESP32-S3 board: the hardware under the
 * firmware (firmware/main and its components), nothing of the firmware's own logic.
 *
 *   csi-ota-sim --flash FILE --config FILE [--power-cut-at N] [--chip-rev-full N]
 *               [--time-scale X] [--max-boots N]
 *
 * Power-on: the bootloader model (firmware/sim/flash) picks the app on the flash file and
 * the board prints ESP-IDF's boot lines, then calls the firmware's app_main() as the main
 * task does; the firmware's tasks run as threads over the host layer (src/). A reset
 * (esp_restart, an abort, a panic) re-executes this program with the same arguments: every
 * task and all RAM are gone, the flash file, the flash operation counter and the bytes
 * queued on the UART (stdin) stay — what a reset does to a board.
 *
 * The --config file holds the values the image was built with (its Kconfig options, see
 * tools/gen_sdkconfig.py and docs/sim.md) and the board's CA bundle; the firmware reads
 * its provisioning from the NVS partition of the flash as on a device.
 *
 * Hardware-layer behaviour markers of test images: "crash_at_boot" panics before app_main
 * (the image's code crashes); "fail_selftest" gives the board a radio that captures no
 * CSI, so the firmware's own csi_frames self-test fails.
 *
 * Exit codes: 0 console `exit` or end of stdin; 1 no bootable app; 2 usage/config error;
 * 4 too many boots (--max-boots); 75 power cut (sim_flash).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "esp_app_desc.h"
#include "sim_board.h"
#include "sim_bootloader.h"
#include "sim_clock.h"
#include "sim_device.h"
#include "sim_flash.h"
#include "sim_image.h"
#include "sim_sdkconfig.h"

#define SIM_EXIT_NO_APP 1
#define SIM_EXIT_USAGE 2
#define SIM_EXIT_BOOT_LOOP 4
#define SIM_DEFAULT_MAX_BOOTS 20u
#define SIM_RESUME_ENV "CSI_OTA_SIM_RESUME"
#define SIM_CONFIG_LINE_MAX 2048
#define SIM_CONFIG_MAX_ENTRIES 32
#define SIM_PATH_MAX 1024

typedef struct {
    const char *flash_path;
    const char *config_path;
    uint64_t power_cut_at;
    int chip_rev_full;
    double time_scale;
    uint32_t max_boots;
} sim_args_t;

typedef struct {
    char name[48]; /* Kconfig symbol without CONFIG_ */
    char *value;
} sim_config_entry_t;

static struct {
    sim_args_t args;
    char **argv;
    sim_flash_t *flash;
    sim_boot_result_t boot;
    esp_app_desc_t app_desc;
    uint32_t boot_count;
    sim_config_entry_t config[SIM_CONFIG_MAX_ENTRIES];
    size_t config_count;
    char bundle_ca[SIM_PATH_MAX];
    char state_dir[SIM_PATH_MAX];
    bool has_nvs_hmac_key;
    uint8_t nvs_hmac_key[32];
    pthread_mutex_t stdout_lock;
} s_board = {.args = {.time_scale = 1.0}, .stdout_lock = PTHREAD_MUTEX_INITIALIZER};

/* --config key → Kconfig symbol of firmware/main/Kconfig.projbuild ('s' string, 'i' int). */
static const struct {
    const char *key;
    const char *symbol;
    char kind;
} SIM_CONFIG_KEYS[] = {
    {"device_id", "CSI_OTA_DEVICE_ID", 's'},
    {"version_check_url", "CSI_OTA_VERSION_CHECK_URL", 's'},
    {"update_url", "CSI_OTA_UPDATE_URL", 's'},
    {"auth_token", "CSI_OTA_AUTH_TOKEN", 's'},
    {"trusted_keys", "CSI_OTA_TRUSTED_KEYS", 's'},
    {"data_url", "CSI_OTA_DATA_URL", 's'},
    {"mqtt_uri", "CSI_OTA_MQTT_URI", 's'},
    {"wifi_ssid", "CSI_OTA_WIFI_SSID", 's'},
    {"wifi_password", "CSI_OTA_WIFI_PASSWORD", 's'},
    {"check_interval_sec", "CSI_OTA_CHECK_INTERVAL_SEC", 'i'},
    {"auto_update_enabled", "CSI_OTA_AUTO_UPDATE", 'i'},
    {"heartbeat_interval_sec", "CSI_OTA_HEARTBEAT_INTERVAL_SEC", 'i'},
    {"selftest_timeout_ms", "CSI_OTA_SELFTEST_TIMEOUT_MS", 'i'},
    {"retry_count", "CSI_OTA_RETRY_COUNT", 'i'},
    {"http_timeout_ms", "CSI_OTA_HTTP_TIMEOUT_MS", 'i'},
    {"backoff_initial_ms", "CSI_OTA_BACKOFF_INITIAL_MS", 'i'},
    {"backoff_max_ms", "CSI_OTA_BACKOFF_MAX_MS", 'i'},
    {"chunk_size_bytes", "CSI_OTA_DOWNLOAD_CHUNK_BYTES", 'i'},
    {"persist_interval_bytes", "CSI_OTA_PERSIST_INTERVAL_BYTES", 'i'},
};

static void board_log(char level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void board_log(char level, const char *tag, const char *fmt, ...) {
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    sim_board_stdout_lock();
    printf("%c (%lu) %s: %s\n", level, (unsigned long)(sim_board_now_us() / 1000), tag, message);
    fflush(stdout);
    sim_board_stdout_unlock();
}

/* ---------------------------------------------------------------- clock -- */

/* The board's clock is sim_clock.c: time-scaled, held back while a task that is due has not
 * run. */
int64_t sim_board_now_us(void) {
    return sim_clock_now_us();
}

/* ---------------------------------------------------------- the board -- */

sim_flash_t *sim_board_flash(void) {
    return s_board.flash;
}

const sim_boot_result_t *sim_board_boot(void) {
    return &s_board.boot;
}

const esp_app_desc_t *sim_board_app_desc(void) {
    return &s_board.app_desc;
}

bool sim_board_behaviour_is(const char *marker) {
    return strcmp(s_board.boot.image.behaviour, marker) == 0;
}

uint16_t sim_board_chip_rev_full(void) {
    return sim_device()->config.chip_rev_full;
}

const char *sim_board_state_dir(void) {
    return s_board.state_dir;
}

const char *sim_board_bundle_ca_file(void) {
    return s_board.bundle_ca;
}

void sim_board_stdout_lock(void) {
    pthread_mutex_lock(&s_board.stdout_lock);
}

void sim_board_stdout_unlock(void) {
    pthread_mutex_unlock(&s_board.stdout_lock);
}

#ifdef CSI_OTA_SIM_COVERAGE
void __gcov_dump(void); /* libgcov: write the .gcda files now */
#endif

/* gcov builds (scripts/coverage_sim.sh): the counts of this boot, before _exit or exec
 * drops them. */
static void board_coverage_dump(void) {
#ifdef CSI_OTA_SIM_COVERAGE
    __gcov_dump();
#endif
}

/* Power off: nothing runs after it — no atexit handlers, which would tear libraries down
 * under tasks still running (a TLS handshake in libcurl's OpenSSL, say). */
void sim_board_power_off(int code) {
    fflush(stdout);
    fflush(stderr);
    board_coverage_dump();
    _exit(code);
}

void sim_board_restart(void) {
    sim_console_before_restart();
    char state[160];
    sim_flash_t *f = s_board.flash;
    snprintf(state, sizeof(state), "%" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
             s_board.boot_count, sim_flash_op_count(f), sim_flash_erase_count(f),
             sim_flash_write_count(f), sim_flash_other_op_count(f));
    setenv(SIM_RESUME_ENV, state, 1);
    fflush(stdout);
    fflush(stderr);
    board_coverage_dump();
    execv("/proc/self/exe", s_board.argv);
    fprintf(stderr, "csi-ota-sim: reset failed: %s\n", strerror(errno));
    _exit(3);
}

/* abort() in the firmware: ESP-IDF prints the panic and resets. */
static void board_on_abort(int sig) {
    (void)sig;
    static const char msg[] = "abort() was called on core 0\n"
                              "Guru Meditation Error: Core  0 panic'ed (abort). \n"
                              "Rebooting...\n";
    fflush(stdout);
    if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0) {
        _exit(3);
    }
    sim_board_restart();
}

/* ------------------------------------------------------- configuration -- */

const char *sim_sdkconfig_str(const char *name, const char *kconfig_value) {
    for (size_t i = 0; i < s_board.config_count; i++) {
        if (strcmp(s_board.config[i].name, name) == 0) {
            return s_board.config[i].value;
        }
    }
    return kconfig_value;
}

long long sim_sdkconfig_int(const char *name, long long kconfig_value) {
    const char *text = sim_sdkconfig_str(name, NULL);
    return text != NULL ? strtoll(text, NULL, 10) : kconfig_value;
}

static void board_usage(const char *why) {
    fprintf(stderr, "csi-ota-sim: %s\n", why);
    fprintf(stderr, "usage: csi-ota-sim --flash FILE --config FILE [--power-cut-at N] "
                    "[--chip-rev-full N] [--time-scale X] [--max-boots N]\n");
    exit(SIM_EXIT_USAGE);
}

static bool board_config_set(const char *symbol, const char *value) {
    size_t i = 0;
    while (i < s_board.config_count && strcmp(s_board.config[i].name, symbol) != 0) {
        i++;
    }
    if (i == SIM_CONFIG_MAX_ENTRIES) {
        return false;
    }
    char *copy = strdup(value);
    if (copy == NULL) {
        return false;
    }
    if (i == s_board.config_count) {
        snprintf(s_board.config[i].name, sizeof(s_board.config[i].name), "%s", symbol);
        s_board.config_count++;
    } else {
        free(s_board.config[i].value);
    }
    s_board.config[i].value = copy;
    return true;
}

static bool board_is_uint(const char *value) {
    if (value[0] == '\0') {
        return false;
    }
    for (const char *p = value; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return strlen(value) <= 10;
}

bool sim_board_nvs_hmac_key(uint8_t key[32]) {
    if (s_board.has_nvs_hmac_key) {
        memcpy(key, s_board.nvs_hmac_key, sizeof(s_board.nvs_hmac_key));
    }
    return s_board.has_nvs_hmac_key;
}

/* One key=value line; false with a reason. */
static bool board_config_line(const char *key, const char *value, char *why, size_t why_len) {
    if (strcmp(key, "ca_cert") == 0) {
        snprintf(s_board.bundle_ca, sizeof(s_board.bundle_ca), "%s", value);
        return true;
    }
    if (strcmp(key, "nvs_hmac_key") == 0) { /* the eFuse key block of NVS encryption */
        bool ok = strlen(value) == 2 * sizeof(s_board.nvs_hmac_key);
        for (size_t i = 0; ok && i < sizeof(s_board.nvs_hmac_key); i++) {
            unsigned byte = 0;
            ok = isxdigit((unsigned char)value[2 * i]) &&
                 isxdigit((unsigned char)value[2 * i + 1]) &&
                 sscanf(value + 2 * i, "%2x", &byte) == 1;
            s_board.nvs_hmac_key[i] = (uint8_t)byte;
        }
        if (!ok) {
            snprintf(why, why_len, "invalid value for nvs_hmac_key: 64 hex digits expected");
            return false;
        }
        s_board.has_nvs_hmac_key = true;
        return true;
    }
    if (strcmp(key, "project") == 0) {
        if (strcmp(value, "csi_sensor") != 0) {
            snprintf(why, why_len, "project: the firmware is csi_sensor, not '%s'", value);
            return false;
        }
        return true;
    }
    for (size_t i = 0; i < sizeof(SIM_CONFIG_KEYS) / sizeof(SIM_CONFIG_KEYS[0]); i++) {
        if (strcmp(key, SIM_CONFIG_KEYS[i].key) != 0) {
            continue;
        }
        if (SIM_CONFIG_KEYS[i].kind == 'i' && !board_is_uint(value)) {
            snprintf(why, why_len, "invalid value for %s: '%s'", key, value);
            return false;
        }
        if (strcmp(key, "heartbeat_interval_sec") == 0 && strcmp(value, "0") == 0) {
            value = "3600"; /* 0 ("off") of older configs: the Kconfig maximum */
        }
        if (strcmp(key, "device_id") == 0 && value[0] == '\0') {
            snprintf(why, why_len, "invalid value for device_id: ''");
            return false;
        }
        return board_config_set(SIM_CONFIG_KEYS[i].symbol, value);
    }
    snprintf(why, why_len, "unknown key '%s'", key);
    return false;
}

/* The scheme://host:port of url, "" if it is not http(s). */
static void board_origin(const char *url, char *out, size_t cap) {
    out[0] = '\0';
    const char *rest = strncmp(url, "http://", 7) == 0    ? url + 7
                       : strncmp(url, "https://", 8) == 0 ? url + 8
                                                          : NULL;
    if (rest != NULL) {
        size_t len = (size_t)(rest - url) + strcspn(rest, "/?#");
        snprintf(out, cap, "%.*s", (int)len, url);
    }
}

static void board_load_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "csi-ota-sim: config: cannot open %s: %s\n", path, strerror(errno));
        exit(SIM_EXIT_USAGE);
    }
    char line[SIM_CONFIG_LINE_MAX];
    unsigned line_no = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line_no++;
        size_t len = strlen(line);
        while (len > 0 &&
               (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) {
            line[--len] = '\0';
        }
        const char *start = line + strspn(line, " \t");
        if (*start == '\0' || *start == '#') {
            continue;
        }
        char *eq = strchr(line, '=');
        char why[300];
        if (eq == NULL) {
            snprintf(why, sizeof(why), "expected key=value");
        } else {
            *eq = '\0';
            if (board_config_line(start, eq + 1, why, sizeof(why))) {
                continue;
            }
        }
        fprintf(stderr, "csi-ota-sim: config: %s:%u: %s\n", path, line_no, why);
        fclose(f);
        exit(SIM_EXIT_USAGE);
    }
    fclose(f);
    /* The HTTP data API defaults to the controller that answers the version check. */
    const char *check_url = sim_sdkconfig_str("CSI_OTA_VERSION_CHECK_URL", NULL);
    if (sim_sdkconfig_str("CSI_OTA_DATA_URL", NULL) == NULL && check_url != NULL) {
        char origin[300];
        board_origin(check_url, origin, sizeof(origin));
        if (origin[0] != '\0') {
            board_config_set("CSI_OTA_DATA_URL", origin);
        }
    }
}

static unsigned long long board_number(const char *flag, const char *value,
                                       unsigned long long max) {
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(value, &end, 10);
    if (value[0] == '-' || value[0] == '\0' || *end != '\0' || errno != 0 || n > max) {
        char why[160];
        snprintf(why, sizeof(why), "%s needs a number up to %llu, got '%s'", flag, max, value);
        board_usage(why);
    }
    return n;
}

static void board_parse_args(int argc, char **argv, sim_args_t *args) {
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
            board_usage(why);
        }
        const char *value = argv[++i];
        if (strcmp(flag, "--flash") == 0) {
            args->flash_path = value;
        } else if (strcmp(flag, "--config") == 0) {
            args->config_path = value;
        } else if (strcmp(flag, "--power-cut-at") == 0) {
            args->power_cut_at = board_number(flag, value, UINT64_MAX);
        } else if (strcmp(flag, "--chip-rev-full") == 0) {
            args->chip_rev_full = (int)board_number(flag, value, 0xFFFF);
        } else if (strcmp(flag, "--max-boots") == 0) {
            args->max_boots = (uint32_t)board_number(flag, value, 100000);
        } else if (strcmp(flag, "--time-scale") == 0) {
            char *end = NULL;
            args->time_scale = strtod(value, &end);
            if (*end != '\0' || !(args->time_scale > 0.0) || args->time_scale > 10000.0) {
                board_usage("--time-scale needs a number in (0, 10000]");
            }
        } else {
            char why[120];
            snprintf(why, sizeof(why), "unknown option %s", flag);
            board_usage(why);
        }
    }
    if (args->flash_path == NULL || args->config_path == NULL) {
        board_usage("--flash and --config are required");
    }
}

/* sim_device's log: the bootloader model and esp_ota_ops emulation print like ESP-IDF. */
static void board_device_log(ota_log_level_t level, const char *tag, const char *fmt,
                             va_list args) {
    static const char letters[] = {'?', 'E', 'W', 'I', 'D'};
    if (level == OTA_LOG_DEBUG && getenv("CSI_OTA_SIM_DEBUG") == NULL) {
        return;
    }
    char message[512];
    vsnprintf(message, sizeof(message), fmt, args);
    board_log(level >= OTA_LOG_ERROR && level <= OTA_LOG_DEBUG ? letters[level] : '?', tag, "%s",
              message);
}

static void board_resume_state(void) {
    const char *resume = getenv(SIM_RESUME_ENV);
    if (resume == NULL) {
        return;
    }
    unsigned long boots = 0;
    unsigned long long ops = 0, erases = 0, writes = 0, others = 0;
    if (sscanf(resume, "%lu %llu %llu %llu %llu", &boots, &ops, &erases, &writes, &others) == 5) {
        s_board.boot_count = (uint32_t)boots;
        sim_flash_restore_counters(s_board.flash, ops, erases, writes, others);
    }
    unsetenv(SIM_RESUME_ENV);
}

int sim_board_run(int argc, char **argv, void (*app_main_fn)(void)) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    s_board.argv = argv;
    board_parse_args(argc, argv, &s_board.args);
    sim_clock_start(s_board.args.time_scale);
    board_load_config(s_board.args.config_path);
    sim_flash_result_t fr = sim_flash_open(s_board.args.flash_path, &s_board.flash);
    if (fr != SIM_FLASH_OK) {
        fprintf(stderr, "csi-ota-sim: cannot open flash file %s: %s\n", s_board.args.flash_path,
                sim_flash_result_str(fr));
        return SIM_EXIT_USAGE;
    }
    snprintf(s_board.state_dir, sizeof(s_board.state_dir), "%s.kv", s_board.args.flash_path);
    board_resume_state();
    if (s_board.args.power_cut_at > 0) {
        sim_flash_set_power_cut(s_board.flash, s_board.args.power_cut_at, SIM_FLASH_CUT_TORN);
    }
    sim_device_config_t device = sim_device_default_config();
    if (s_board.args.chip_rev_full >= 0) {
        device.chip_rev_full = (uint16_t)s_board.args.chip_rev_full;
    }
    device.log = board_device_log;
    sim_device_init(s_board.flash, &device);

    s_board.boot_count++;
    if (s_board.boot_count > s_board.args.max_boots) {
        board_log('E', "sim", "boot %lu exceeds --max-boots %lu; stopping",
                  (unsigned long)s_board.boot_count, (unsigned long)s_board.args.max_boots);
        return SIM_EXIT_BOOT_LOOP;
    }
    board_log('I', "boot", "ESP-IDF virtual ESP32-S3 2nd stage bootloader (boot %lu)",
              (unsigned long)s_board.boot_count);
    sim_boot_status_t boot_status = sim_bootloader_boot(&s_board.boot);
    if (boot_status != SIM_BOOT_OK) {
        board_log('E', "boot", "no bootable app: %s", sim_boot_status_str(boot_status));
        return SIM_EXIT_NO_APP;
    }
    const sim_partition_t *part = &s_board.boot.partition;
    if (sim_flash_read(s_board.flash, part->offset_bytes + 0x20, &s_board.app_desc,
                       sizeof(s_board.app_desc)) != SIM_FLASH_OK) {
        memset(&s_board.app_desc, 0, sizeof(s_board.app_desc));
    }
    const esp_app_desc_t *desc = &s_board.app_desc;
    board_log('I', "cpu_start", "Project name:     %s", desc->project_name);
    board_log('I', "cpu_start", "App version:      %s", desc->version);
    board_log('I', "cpu_start", "ESP-IDF:          %s", desc->idf_ver);
    board_log('I', "cpu_start", "Secure version:   %lu", (unsigned long)desc->secure_version);
    if (!sim_board_behaviour_is("normal")) {
        board_log('W', "sim", "image behaviour marker: %s", s_board.boot.image.behaviour);
    }
    if (sim_board_behaviour_is("crash_at_boot")) {
        printf("Guru Meditation Error: Core  0 panic'ed (LoadProhibited). Exception was "
               "unhandled.\n");
        printf("Rebooting...\n");
        sim_board_restart();
    }
    signal(SIGABRT, board_on_abort);
    app_main_fn();
    for (;;) {
        pause(); /* the main task ends; the firmware's tasks run on */
    }
}
