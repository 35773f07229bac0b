/*
 * sim_device.h — the one virtual ESP32-S3 of this process: its flash, its
 * partition table, its configuration, and which app the bootloader started.
 *
 * The sim's main:
 *     sim_device_config_t cfg = sim_device_default_config();
 *     cfg.chip_rev_full = …;  cfg.rollback_enabled = …;  cfg.log = ota_port_log;
 *     sim_device_init(flash, &cfg);
 *     sim_boot_result_t boot;
 *     if (sim_bootloader_boot(&boot) != SIM_BOOT_OK) …   // sim_bootloader.h
 *     … run the app (boot.image.behaviour, boot.image.app_desc) …
 * and on `reboot` calls sim_bootloader_boot() again (same flash, same counters).
 * The sim_ota_* slot functions (sim_ota_ops.c) act on this context.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "ota_port.h"
#include "sim_flash.h"
#include "sim_partition_table.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same signature as ota_port_log, so the sim's main can pass ota_port_log. */
typedef void (*sim_log_fn)(ota_log_level_t level, const char *tag, const char *fmt, va_list args);

typedef struct {
    /* CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (default true). */
    bool rollback_enabled;
    /* efuse chip revision, major*100 + minor (default 0 = v0.0). */
    uint16_t chip_rev_full;
    /* Where the bootloader model and esp_ota_ops emulation log; NULL: silent. */
    sim_log_fn log;
} sim_device_config_t;

typedef struct {
    sim_flash_t *flash;
    sim_device_config_t config;
    sim_partition_table_t table;
    bool table_loaded;
    /* Set by sim_bootloader_boot: the partition the app runs from. */
    bool app_running;
    sim_partition_t running_partition;
    int running_slot; /* OTA_SLOT_NONE for factory/test */
} sim_device_t;

sim_device_config_t sim_device_default_config(void);
/* Resets the context to this flash (also sim_flash_set_default(flash)); no app running. */
void sim_device_init(sim_flash_t *flash, const sim_device_config_t *config);
sim_device_t *sim_device(void);
/* The setter the main calls from --chip-rev-full (also usable after init). */
void sim_device_set_chip_rev_full(uint16_t chip_rev_full);

/* Logging helper used by the model (printf-style; no-op without a log function). */
void sim_device_log(ota_log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
