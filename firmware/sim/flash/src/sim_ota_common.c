/* sim_ota_common.c — what the esp_ota_ops emulation files share: partitions, otadata I/O, image
 * checks. */
#include "sim_ota_common.h"

#include "sim_device.h"
#include "sim_image.h"

static const char *TAG = "esp_ota_ops";

const sim_partition_table_t *sim_ota_common_table(void) {
    sim_device_t *device = sim_device();
    return device->table_loaded ? &device->table : NULL;
}

const sim_partition_t *sim_ota_common_otadata_partition(void) {
    const sim_partition_table_t *t = sim_ota_common_table();
    return t == NULL ? NULL : sim_partition_find(t, SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA);
}

const sim_partition_t *sim_ota_common_slot_partition(int slot) {
    const sim_partition_table_t *t = sim_ota_common_table();
    return t == NULL ? NULL : sim_partition_ota_slot(t, slot);
}

const sim_partition_t *sim_ota_common_factory_partition(void) {
    const sim_partition_table_t *t = sim_ota_common_table();
    return t == NULL ? NULL : sim_partition_find(t, SIM_PART_TYPE_APP, SIM_PART_SUBTYPE_FACTORY);
}

/* esp_ota_get_app_partition_count: ota_0, ota_1, … up to the first gap. */
int sim_ota_common_app_count(void) {
    const sim_partition_table_t *t = sim_ota_common_table();
    return t == NULL ? 0 : sim_partition_app_ota_count(t);
}

const sim_partition_t *sim_ota_common_running_partition(void) {
    sim_device_t *device = sim_device();
    return device->app_running ? &device->running_partition : NULL;
}

bool sim_ota_common_same_partition(const sim_partition_t *a, const sim_partition_t *b) {
    return a != NULL && b != NULL && a->offset_bytes == b->offset_bytes &&
           a->size_bytes == b->size_bytes;
}

int sim_ota_common_slot_of_partition(const sim_partition_t *p) {
    if (p == NULL || p->type != SIM_PART_TYPE_APP ||
        (p->subtype & ~SIM_PART_SUBTYPE_OTA_MASK) != SIM_PART_SUBTYPE_OTA_FLAG) {
        return OTA_SLOT_NONE;
    }
    return p->subtype & SIM_PART_SUBTYPE_OTA_MASK;
}

/* sim_ota_common_read_otadata(): NULL when there is no otadata partition or it cannot be read. */
const sim_partition_t *sim_ota_common_read_otadata(sim_otadata_entry_t entries[2]) {
    const sim_partition_t *otadata = sim_ota_common_otadata_partition();
    if (otadata == NULL) {
        sim_device_log(OTA_LOG_ERROR, TAG, "not found otadata");
        return NULL;
    }
    if (sim_otadata_read(sim_device()->flash, otadata, entries) != SIM_FLASH_OK) {
        return NULL;
    }
    return otadata;
}

bool sim_ota_common_image_valid(const sim_partition_t *p, bool silent) {
    char why[160];
    sim_image_result_t result =
        sim_image_verify(sim_device()->flash, p->offset_bytes, p->size_bytes,
                         sim_device()->config.chip_rev_full, NULL, why, sizeof(why));
    if (result != SIM_IMAGE_OK && !silent) {
        sim_device_log(OTA_LOG_ERROR, "esp_image", "%s", why);
    }
    return result == SIM_IMAGE_OK;
}

ota_status_t sim_ota_common_flash_status(sim_flash_result_t result, ota_status_t failure) {
    return result == SIM_FLASH_OK ? OTA_OK : failure;
}

/* sim_ota_common_rewrite_ota_seq(): set seq, recompute the crc, erase the sector, write the entry.
 */
ota_status_t sim_ota_common_rewrite_ota_seq(sim_otadata_entry_t entries[2], uint32_t seq, int index,
                                            const sim_partition_t *otadata, bool map_to_set_boot) {
    entries[index].ota_seq = seq;
    entries[index].crc = sim_otadata_crc(&entries[index]);
    sim_flash_t *flash = sim_device()->flash;
    uint32_t sector = otadata->offset_bytes + (uint32_t)index * SIM_FLASH_SECTOR_SIZE_BYTES;
    sim_flash_result_t result = sim_flash_erase_sector(flash, sector);
    if (result != SIM_FLASH_OK) {
        return map_to_set_boot ? OTA_ERR_SET_BOOT : OTA_ERR_FLASH_ERASE;
    }
    uint8_t raw[SIM_OTADATA_ENTRY_SIZE_BYTES];
    sim_otadata_pack(&entries[index], raw);
    result = sim_flash_write(flash, sector, raw, sizeof(raw));
    return sim_ota_common_flash_status(result,
                                       map_to_set_boot ? OTA_ERR_SET_BOOT : OTA_ERR_FLASH_WRITE);
}
