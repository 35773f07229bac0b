/* sim_bootloader.c — ESP-IDF's second-stage bootloader app selection on the sim flash. */
#include "sim_bootloader.h"

#include <string.h>

#include "sim_ota_ops.h"

static const char *TAG = "boot";

typedef struct {
    const sim_partition_t *factory;
    const sim_partition_t *test;
    const sim_partition_t *otadata;
    const sim_partition_t *ota[SIM_MAX_OTA_SLOTS]; /* by subtype & 0x0F, the last one listed wins */
    int ota_count;                                 /* every OTA app partition, gaps included */
} boot_layout_t;

static void collect_layout(const sim_partition_table_t *table, boot_layout_t *layout) {
    memset(layout, 0, sizeof(*layout));
    for (int i = 0; i < table->count; i++) {
        const sim_partition_t *p = &table->entries[i];
        if (p->type == SIM_PART_TYPE_APP) {
            if (p->subtype == SIM_PART_SUBTYPE_FACTORY) {
                layout->factory = p;
            } else if (p->subtype == SIM_PART_SUBTYPE_TEST) {
                layout->test = p;
            } else if ((p->subtype & ~SIM_PART_SUBTYPE_OTA_MASK) == SIM_PART_SUBTYPE_OTA_FLAG) {
                layout->ota[p->subtype & SIM_PART_SUBTYPE_OTA_MASK] = p;
                layout->ota_count++;
            }
        } else if (p->type == SIM_PART_TYPE_DATA && p->subtype == SIM_PART_SUBTYPE_DATA_OTA) {
            layout->otadata = p;
        }
    }
}

/* index_to_partition(): NULL when the index names nothing (a gap, or beyond the count). */
static const sim_partition_t *index_to_partition(const boot_layout_t *layout, int index) {
    if (index == SIM_BOOT_INDEX_FACTORY) {
        return layout->factory;
    }
    if (index == SIM_BOOT_INDEX_TEST) {
        return layout->test;
    }
    if (index >= 0 && index < SIM_MAX_OTA_SLOTS && index < layout->ota_count) {
        return layout->ota[index];
    }
    return NULL;
}

static bool initial_or_bad_crc(const sim_otadata_entry_t *entry) {
    return entry->ota_seq == UINT32_MAX || !sim_otadata_crc_ok(entry);
}

sim_boot_selection_t sim_bootloader_select(sim_otadata_entry_t entries[2], int ota_count,
                                           bool factory_present, bool rollback_enabled) {
    sim_boot_selection_t sel = {
        .start_index = SIM_BOOT_INDEX_FACTORY, .active_entry = -1, .marked_pending = -1};
    if (rollback_enabled) {
        for (int i = 0; i < 2; i++) {
            if (entries[i].ota_state == SIM_OTA_STATE_PENDING_VERIFY) {
                entries[i].ota_state = SIM_OTA_STATE_ABORTED;
                sel.aborted[i] = true;
            }
        }
    }
    if ((sim_otadata_entry_invalid(&entries[0]) && sim_otadata_entry_invalid(&entries[1])) ||
        ota_count == 0) {
        sel.both_invalid = true;
        if (factory_present) {
            sel.start_index = SIM_BOOT_INDEX_FACTORY;
        } else {
            sel.start_index = 0;
            sel.initial_write = initial_or_bad_crc(&entries[0]) && initial_or_bad_crc(&entries[1]);
        }
        return sel;
    }
    int active = sim_otadata_active(entries);
    if (active == -1) {
        sel.start_index = SIM_BOOT_INDEX_FACTORY; /* factory, or "will try all partitions" */
        return sel;
    }
    sel.active_entry = active;
    sel.start_index = sim_otadata_slot_of_seq(entries[active].ota_seq, ota_count);
    if (rollback_enabled && entries[active].ota_state == SIM_OTA_STATE_NEW) {
        entries[active].ota_state = SIM_OTA_STATE_PENDING_VERIFY;
        sel.marked_pending = active;
    }
    return sel;
}

static void write_entry(sim_device_t *device, const sim_partition_t *otadata, int index,
                        const sim_otadata_entry_t *entry) {
    sim_flash_result_t result = sim_otadata_write(device->flash, otadata, index, entry);
    if (result != SIM_FLASH_OK) {
        sim_device_log(OTA_LOG_ERROR, TAG, "Error in write_otadata operation. err = %s",
                       sim_flash_result_str(result));
    }
}

static const char *partition_usage(const sim_partition_t *p) {
    if (p->type == SIM_PART_TYPE_APP) {
        if (p->subtype == SIM_PART_SUBTYPE_FACTORY) {
            return "factory app";
        }
        if (p->subtype == SIM_PART_SUBTYPE_TEST) {
            return "test app";
        }
        return (p->subtype & ~SIM_PART_SUBTYPE_OTA_MASK) == SIM_PART_SUBTYPE_OTA_FLAG
                   ? "OTA app"
                   : "Unknown app";
    }
    if (p->type == SIM_PART_TYPE_DATA) {
        switch (p->subtype) {
        case SIM_PART_SUBTYPE_DATA_OTA:
            return "OTA data";
        case 0x01:
            return "RF data";
        case SIM_PART_SUBTYPE_DATA_NVS:
            return "WiFi data";
        case 0x04:
            return "NVS keys";
        default:
            return "Unknown data";
        }
    }
    return "unknown";
}

static void log_table(const sim_partition_table_t *table) {
    sim_device_log(OTA_LOG_INFO, TAG, "Partition Table:");
    sim_device_log(OTA_LOG_INFO, TAG, "## Label            Usage          Type ST Offset   Length");
    for (int i = 0; i < table->count; i++) {
        const sim_partition_t *p = &table->entries[i];
        sim_device_log(OTA_LOG_INFO, TAG, "%2d %-16s %-16s %02x %02x %08x %08x", i, p->label,
                       partition_usage(p), p->type, p->subtype, (unsigned)p->offset_bytes,
                       (unsigned)p->size_bytes);
    }
    sim_device_log(OTA_LOG_INFO, TAG, "End of partition table");
}

static void log_not_bootable(int index) {
    if (index == SIM_BOOT_INDEX_FACTORY) {
        sim_device_log(OTA_LOG_ERROR, TAG, "Factory app partition is not bootable");
    } else if (index == SIM_BOOT_INDEX_TEST) {
        sim_device_log(OTA_LOG_ERROR, TAG, "Factory test app partition is not bootable");
    } else {
        sim_device_log(OTA_LOG_ERROR, TAG, "OTA app partition slot %d is not bootable", index);
    }
}

static bool try_load(sim_device_t *device, const sim_partition_t *part, sim_image_info_t *image) {
    if (part == NULL || part->size_bytes == 0) {
        return false;
    }
    char why[160];
    sim_image_result_t result =
        sim_image_verify(device->flash, part->offset_bytes, part->size_bytes,
                         device->config.chip_rev_full, image, why, sizeof(why));
    if (result != SIM_IMAGE_OK) {
        sim_device_log(OTA_LOG_ERROR, "esp_image", "%s", why);
        return false;
    }
    sim_device_log(OTA_LOG_INFO, TAG, "Loaded app from partition at offset 0x%x",
                   (unsigned)part->offset_bytes);
    return true;
}

static sim_boot_status_t booted(sim_device_t *device, const sim_partition_t *part, int index,
                                int selected, const sim_image_info_t *image,
                                sim_boot_result_t *result) {
    device->app_running = true;
    device->running_partition = *part;
    device->running_slot = index >= 0 ? index : OTA_SLOT_NONE;
    if (result != NULL) {
        result->selected_index = selected;
        result->boot_index = index;
        result->slot = device->running_slot;
        result->fell_back = index != selected;
        result->partition = *part;
        result->image = *image;
    }
    return SIM_BOOT_OK;
}

sim_boot_status_t sim_bootloader_boot(sim_boot_result_t *result) {
    sim_device_t *device = sim_device();
    sim_ota_update_reset_all();
    device->app_running = false;
    device->running_slot = OTA_SLOT_NONE;
    if (result != NULL) {
        memset(result, 0, sizeof(*result));
        result->slot = OTA_SLOT_NONE;
    }

    char why[160];
    device->table_loaded = false;
    sim_pt_result_t pt = sim_partition_table_load(device->flash, &device->table, why, sizeof(why));
    if (pt != SIM_PT_OK) {
        sim_device_log(OTA_LOG_ERROR, "flash_parts", "%s", why);
        sim_device_log(OTA_LOG_ERROR, TAG, "Failed to verify partition table");
        return SIM_BOOT_ERR_PARTITION_TABLE;
    }
    device->table_loaded = true;
    log_table(&device->table);

    boot_layout_t layout;
    collect_layout(&device->table, &layout);
    bool rollback = device->config.rollback_enabled;
    int start = SIM_BOOT_INDEX_FACTORY;
    bool initial_write = false;

    if (layout.otadata != NULL) {
        if (layout.otadata->size_bytes < SIM_OTADATA_MIN_SIZE_BYTES) {
            sim_device_log(OTA_LOG_ERROR, TAG,
                           "ota_info partition size %u is too small (minimum %u bytes)",
                           (unsigned)layout.otadata->size_bytes, SIM_OTADATA_MIN_SIZE_BYTES);
            return SIM_BOOT_ERR_OTADATA;
        }
        sim_otadata_entry_t entries[2];
        if (sim_otadata_read(device->flash, layout.otadata, entries) != SIM_FLASH_OK) {
            return SIM_BOOT_ERR_OTADATA;
        }
        sim_device_log(OTA_LOG_DEBUG, TAG, "otadata[0]: sequence values 0x%08x",
                       (unsigned)entries[0].ota_seq);
        sim_device_log(OTA_LOG_DEBUG, TAG, "otadata[1]: sequence values 0x%08x",
                       (unsigned)entries[1].ota_seq);
        sim_boot_selection_t sel =
            sim_bootloader_select(entries, layout.ota_count, layout.factory != NULL, rollback);
        for (int i = 0; i < 2; i++) {
            if (sel.aborted[i]) {
                sim_device_log(OTA_LOG_DEBUG, TAG, "otadata[%d] is marking as ABORTED", i);
                write_entry(device, layout.otadata, i, &entries[i]);
            }
        }
        if (sel.both_invalid) {
            sim_device_log(OTA_LOG_INFO, TAG,
                           layout.factory != NULL ? "Defaulting to factory image"
                                                  : "No factory image, trying OTA 0");
        } else if (sel.active_entry == -1) {
            if (layout.factory != NULL) {
                sim_device_log(OTA_LOG_ERROR, TAG,
                               "ota data partition invalid, falling back to factory");
            } else {
                sim_device_log(
                    OTA_LOG_ERROR, TAG,
                    "ota data partition invalid and no factory, will try all partitions");
            }
        } else {
            sim_device_log(OTA_LOG_DEBUG, TAG, "Active otadata[%d]", sel.active_entry);
            sim_device_log(OTA_LOG_DEBUG, TAG, "Mapping seq %u -> OTA slot %d",
                           (unsigned)(entries[sel.active_entry].ota_seq - 1u), sel.start_index);
        }
        if (sel.marked_pending >= 0) {
            sim_device_log(OTA_LOG_DEBUG, TAG,
                           "otadata[%d] is selected as new and marked PENDING_VERIFY state",
                           sel.marked_pending);
            write_entry(device, layout.otadata, sel.marked_pending, &entries[sel.marked_pending]);
        }
        start = sel.start_index;
        initial_write = sel.initial_write;
    }

    sim_image_info_t image;
    /* Work backwards from start to the factory app, then forwards through the other slots. */
    for (int pass = 0; pass < 2; pass++) {
        int first = pass == 0 ? start : start + 1;
        int last = pass == 0 ? SIM_BOOT_INDEX_FACTORY : layout.ota_count - 1;
        int step = pass == 0 ? -1 : 1;
        for (int index = first; pass == 0 ? index >= last : index <= last; index += step) {
            const sim_partition_t *part = index_to_partition(&layout, index);
            if (part == NULL || part->size_bytes == 0) {
                continue;
            }
            if (try_load(device, part, &image)) {
                if (index > SIM_BOOT_INDEX_FACTORY && initial_write && layout.otadata != NULL) {
                    sim_otadata_entry_t entry =
                        sim_otadata_make((uint32_t)index + 1u, SIM_OTA_STATE_VALID);
                    write_entry(device, layout.otadata, 0, &entry);
                    sim_device_log(OTA_LOG_INFO, TAG, "Set actual ota_seq=%u in otadata[0]",
                                   (unsigned)entry.ota_seq);
                }
                return booted(device, part, index, start, &image, result);
            }
            log_not_bootable(index);
        }
    }
    if (layout.test != NULL && try_load(device, layout.test, &image)) {
        sim_device_log(OTA_LOG_WARN, TAG, "Falling back to test app as only bootable partition");
        return booted(device, layout.test, SIM_BOOT_INDEX_TEST, start, &image, result);
    }
    sim_device_log(OTA_LOG_ERROR, TAG, "No bootable app partitions in the partition table");
    return SIM_BOOT_ERR_NO_BOOTABLE_APP;
}

const char *sim_boot_status_str(sim_boot_status_t status) {
    switch (status) {
    case SIM_BOOT_OK:
        return "ok";
    case SIM_BOOT_ERR_PARTITION_TABLE:
        return "partition table invalid";
    case SIM_BOOT_ERR_OTADATA:
        return "otadata partition unusable";
    case SIM_BOOT_ERR_NO_BOOTABLE_APP:
        return "no bootable app";
    }
    return "unknown";
}
