/*
 * sim_provisioning.h — the settings of one boot of the virtual device.
 *
 * The device reads its settings from the NVS provisioning image in its nvs
 * partition (firmware/main/provisioning.c); the sim does the same with its
 * flash file, at every boot, over the settings of its config file. A flash
 * without a partition table, an nvs partition or the "csi_ota" namespace
 * leaves the file's settings as they are.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim_config.h"
#include "sim_flash.h"

typedef struct {
    bool has_nvs_partition;
    uint32_t nvs_offset_bytes;
    unsigned nvs_settings; /* settings taken from the provisioning image */
} sim_provisioning_info_t;

/* out = file_config + the provisioning image; false with a reason when a stored
 * value is invalid or a required setting is missing. */
bool sim_provisioning_load(const sim_config_t *file_config, const sim_flash_t *flash,
                           sim_config_t *out, sim_provisioning_info_t *info, char *why,
                           size_t why_len);
