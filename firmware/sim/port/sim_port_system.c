/* sim_port_system.c — clock, sleep, randomness, log, reboot and the port's init. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ota_port.h"
#include "sim_port.h"
#include "sim_port_internal.h"

static double sim_time_scale = 1.0;
static uint64_t sim_start_real_ms;
static uint64_t sim_boot_ms; /* scaled clock at the last boot */
static sim_port_reboot_fn sim_reboot_handler;

static uint64_t sim_real_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool sim_port_init(const sim_port_config_t *config) {
    sim_time_scale = config->time_scale > 0 ? config->time_scale : 1.0;
    sim_start_real_ms = sim_real_ms();
    sim_boot_ms = 0;
    if (!sim_kv_init(config->kv_dir)) {
        fprintf(stderr, "csi-ota-sim: cannot create KV directory %s: %s\n", config->kv_dir,
                strerror(errno));
        return false;
    }
    sim_http_init(config->ca_cert);
    return true;
}

void sim_port_set_reboot_handler(sim_port_reboot_fn handler) {
    sim_reboot_handler = handler;
}

uint64_t ota_port_monotonic_ms(void) {
    return (uint64_t)((double)(sim_real_ms() - sim_start_real_ms) * sim_time_scale);
}

void sim_port_mark_boot(void) {
    sim_boot_ms = ota_port_monotonic_ms();
}

uint32_t sim_port_ms_since_boot(void) {
    return (uint32_t)(ota_port_monotonic_ms() - sim_boot_ms);
}

void ota_port_sleep_ms(uint32_t ms) {
    double real_ms = (double)ms / sim_time_scale;
    struct timespec ts = {
        .tv_sec = (time_t)(real_ms / 1000.0),
        .tv_nsec = (long)((real_ms - (double)(time_t)(real_ms / 1000.0) * 1000.0) * 1e6),
    };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint32_t ota_port_random_u32(void) {
    uint32_t value = 0;
    if (getrandom(&value, sizeof(value), 0) != (ssize_t)sizeof(value)) {
        value = (uint32_t)rand();
    }
    return value;
}

void ota_port_log(ota_log_level_t level, const char *tag, const char *fmt, va_list args) {
    static const char letters[] = {'?', 'E', 'W', 'I', 'D'};
    char letter = (level >= OTA_LOG_ERROR && level <= OTA_LOG_DEBUG) ? letters[level] : '?';
    if (level == OTA_LOG_DEBUG && getenv("CSI_OTA_SIM_DEBUG") == NULL) {
        return;
    }
    char message[1024];
    vsnprintf(message, sizeof(message), fmt, args);
    printf("%c (%lu) %s: %s\n", letter, (unsigned long)sim_port_ms_since_boot(), tag, message);
}

void sim_port_reset(void) {
    sim_http_reset();
    sim_crypto_reset();
}

void sim_port_shutdown(void) {
    sim_port_reset();
    sim_http_shutdown();
}

uint64_t sim_port_http_request_count(void) {
    return sim_http_request_count();
}

void ota_port_reboot(void) {
    fflush(stdout);
    sim_port_reset();
    if (sim_reboot_handler != NULL) {
        sim_reboot_handler(); /* does not return */
    }
    printf("E (%lu) sim: reboot without a handler; exiting\n",
           (unsigned long)sim_port_ms_since_boot());
    exit(3);
}
