/* sim_provisioning.c — a boot's settings: the config file, then the NVS provisioning image. */
#include "sim_provisioning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_partition_table.h"

bool sim_provisioning_load(const sim_config_t *file_config, const sim_flash_t *flash,
                           sim_config_t *out, sim_provisioning_info_t *info, char *why,
                           size_t why_len) {
    *out = *file_config;
    memset(info, 0, sizeof(*info));
    sim_partition_table_t table;
    char reason[160];
    if (sim_partition_table_load(flash, &table, reason, sizeof(reason)) == SIM_PT_OK) {
        const sim_partition_t *nvs =
            sim_partition_find(&table, SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_NVS);
        if (nvs != NULL) {
            info->nvs_offset_bytes = nvs->offset_bytes;
            info->has_nvs_partition = true;
            uint8_t *bytes = malloc(nvs->size_bytes);
            if (bytes == NULL) {
                snprintf(why, why_len, "out of memory reading the nvs partition");
                return false;
            }
            bool ok =
                sim_flash_read(flash, nvs->offset_bytes, bytes, nvs->size_bytes) == SIM_FLASH_OK &&
                sim_config_apply_nvs(out, bytes, nvs->size_bytes, &info->nvs_settings, reason,
                                     sizeof(reason));
            free(bytes);
            if (!ok) {
                snprintf(why, why_len, "provisioning image at 0x%lx: %s",
                         (unsigned long)nvs->offset_bytes, reason);
                return false;
            }
        }
    }
    return sim_config_check(out, why, why_len);
}
