/* sim_device.c — the process's one virtual ESP32-S3 (flash, table, running app). */
#include "sim_device.h"

#include <string.h>

static sim_device_t s_device = {.running_slot = OTA_SLOT_NONE};

sim_device_config_t sim_device_default_config(void) {
    sim_device_config_t config = {.rollback_enabled = true, .chip_rev_full = 0, .log = NULL};
    return config;
}

void sim_device_init(sim_flash_t *flash, const sim_device_config_t *config) {
    memset(&s_device, 0, sizeof(s_device));
    s_device.flash = flash;
    s_device.config = config != NULL ? *config : sim_device_default_config();
    s_device.running_slot = OTA_SLOT_NONE;
    sim_flash_set_default(flash);
}

sim_device_t *sim_device(void) {
    return &s_device;
}

void sim_device_set_chip_rev_full(uint16_t chip_rev_full) {
    s_device.config.chip_rev_full = chip_rev_full;
}

void sim_device_log(ota_log_level_t level, const char *tag, const char *fmt, ...) {
    if (s_device.config.log == NULL) {
        return;
    }
    va_list args;
    va_start(args, fmt);
    s_device.config.log(level, tag, fmt, args);
    va_end(args);
}
