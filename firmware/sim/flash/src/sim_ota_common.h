/*
 * sim_ota_common.h — helpers shared by the esp_ota_ops emulation files
 * (sim_ota_ops.c, sim_ota_update.c). Private to the library.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ota_port.h"
#include "sim_flash.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"

/* The table the last boot loaded, NULL before any boot. */
const sim_partition_table_t *sim_ota_common_table(void);
const sim_partition_t *sim_ota_common_otadata_partition(void);
/* ota_<slot>, NULL if absent. */
const sim_partition_t *sim_ota_common_slot_partition(int slot);
const sim_partition_t *sim_ota_common_factory_partition(void);
/* esp_ota_get_app_partition_count: ota_0, ota_1, … up to the first gap. */
int sim_ota_common_app_count(void);
/* esp_ota_get_running_partition, NULL when no app runs. */
const sim_partition_t *sim_ota_common_running_partition(void);
bool sim_ota_common_same_partition(const sim_partition_t *a, const sim_partition_t *b);
/* OTA slot of an app partition, OTA_SLOT_NONE for factory/test/NULL. */
int sim_ota_common_slot_of_partition(const sim_partition_t *p);
/* read_otadata(): both entries; NULL when there is no otadata partition or it cannot be read. */
const sim_partition_t *sim_ota_common_read_otadata(sim_otadata_entry_t entries[2]);
/* esp_image_verify(ESP_IMAGE_VERIFY[_SILENT]) of a partition. */
bool sim_ota_common_image_valid(const sim_partition_t *p, bool silent);
ota_status_t sim_ota_common_flash_status(sim_flash_result_t result, ota_status_t failure);
/* rewrite_ota_seq(): set seq and crc of entries[index], erase its sector, write it.
 * Errors: OTA_ERR_SET_BOOT when map_to_set_boot, else OTA_ERR_FLASH_ERASE / _WRITE. */
ota_status_t sim_ota_common_rewrite_ota_seq(sim_otadata_entry_t entries[2], uint32_t seq, int index,
                                            const sim_partition_t *otadata, bool map_to_set_boot);
