/*
 * sim_ota_ops.c — ota_port.h's slot queries and otadata updates with esp_ota_ops.c's
 * observable behaviour on the virtual device (rules 7–16 of esp-idf-otadata-behaviour.md).
 * Writing an image (begin/resume/write/end/abort) is in sim_ota_update.c.
 */
#include "sim_ota_ops.h"

#include <string.h>

#include "sim_device.h"
#include "sim_image.h"
#include "sim_ota_common.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"

static const char *TAG = "esp_ota_ops";

/* ------------------------------------------------------------------ queries */

int sim_ota_running_slot(void) {
    return sim_ota_common_slot_of_partition(sim_ota_common_running_partition());
}

/* find_default_boot_partition(): factory, else the first OTA slot, else test. */
static int default_boot_slot(void) {
    if (sim_ota_common_factory_partition() != NULL) {
        return OTA_SLOT_NONE;
    }
    for (int slot = 0; slot < SIM_MAX_OTA_SLOTS; slot++) {
        if (sim_ota_common_slot_partition(slot) != NULL) {
            return slot;
        }
    }
    return OTA_SLOT_NONE;
}

int sim_ota_boot_slot(void) {
    sim_otadata_entry_t entries[2];
    if (sim_ota_common_read_otadata(entries) == NULL) {
        return OTA_SLOT_NONE;
    }
    int count = sim_ota_common_app_count();
    if ((sim_otadata_entry_invalid(&entries[0]) && sim_otadata_entry_invalid(&entries[1])) ||
        count == 0) {
        return default_boot_slot();
    }
    int active = sim_otadata_active(entries);
    if (active == -1) {
        sim_device_log(OTA_LOG_ERROR, TAG, "ota data invalid, no current app. Assuming factory");
        return default_boot_slot();
    }
    int slot = sim_otadata_slot_of_seq(entries[active].ota_seq, count);
    return sim_ota_common_slot_partition(slot) != NULL ? slot : OTA_SLOT_NONE;
}

int sim_ota_next_update_slot(void) {
    const sim_partition_t *start_from = sim_ota_common_running_partition();
    if (start_from == NULL) {
        return OTA_SLOT_NONE;
    }
    int default_slot = OTA_SLOT_NONE;
    bool next_is_result = false;
    for (int slot = 0; slot < SIM_MAX_OTA_SLOTS; slot++) {
        const sim_partition_t *p = sim_ota_common_slot_partition(slot);
        if (p == NULL) {
            continue;
        }
        if (default_slot == OTA_SLOT_NONE) {
            default_slot = slot;
        }
        if (sim_ota_common_same_partition(p, start_from)) {
            next_is_result = true;
        } else if (next_is_result) {
            return slot;
        }
    }
    return default_slot;
}

ota_status_t sim_ota_slot_size(int slot, uint32_t *size_bytes) {
    const sim_partition_t *p = sim_ota_common_slot_partition(slot);
    if (p == NULL || size_bytes == NULL) {
        return p == NULL ? OTA_ERR_NOT_FOUND : OTA_ERR_INVALID_ARG;
    }
    *size_bytes = p->size_bytes;
    return OTA_OK;
}

ota_status_t sim_ota_slot_state(int slot, ota_img_state_t *state) {
    if (state == NULL || sim_ota_common_slot_partition(slot) == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    int count = sim_ota_common_app_count();
    sim_otadata_entry_t entries[2];
    if (sim_ota_common_read_otadata(entries) == NULL || count == 0) {
        return OTA_ERR_NOT_FOUND;
    }
    /* Rule 8: the first CRC-valid entry (sector 0 first) naming the slot, whatever its age. */
    for (int i = 0; i < 2; i++) {
        if (sim_otadata_slot_of_seq(entries[i].ota_seq, count) == slot &&
            sim_otadata_crc_ok(&entries[i])) {
            *state = (ota_img_state_t)entries[i].ota_state;
            return OTA_OK;
        }
    }
    return OTA_ERR_NOT_FOUND;
}

ota_status_t sim_ota_slot_app_desc(int slot, ota_app_desc_t *desc) {
    const sim_partition_t *p = sim_ota_common_slot_partition(slot);
    if (p == NULL || desc == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    sim_image_result_t result = sim_image_read_app_desc(sim_device()->flash, p->offset_bytes, desc);
    if (result == SIM_IMAGE_ERR_READ) {
        return OTA_ERR_FLASH_READ;
    }
    return result == SIM_IMAGE_OK ? OTA_OK : OTA_ERR_NOT_FOUND;
}

ota_status_t sim_ota_slot_read(int slot, uint32_t offset_bytes, void *buf, size_t len) {
    const sim_partition_t *p = sim_ota_common_slot_partition(slot);
    if (p == NULL || (buf == NULL && len > 0) || offset_bytes > p->size_bytes ||
        len > (size_t)(p->size_bytes - offset_bytes)) {
        return OTA_ERR_INVALID_ARG;
    }
    sim_flash_result_t result =
        sim_flash_read(sim_device()->flash, p->offset_bytes + offset_bytes, buf, len);
    return sim_ota_common_flash_status(result, OTA_ERR_FLASH_READ);
}

/* ------------------------------------------------------------------ otadata updates */

/*
 * compute_ota_seq_for_target_slot(): the smallest base + i·count (uint32
 * arithmetic, wrapping) that is >= current_seq. Rule 12: it can be
 * 0xFFFFFFFF. When no such value exists ESP-IDF's loop never ends; the model
 * reports false instead of hanging.
 */
static bool next_seq_for_slot(uint32_t current_seq, int slot, int count, uint32_t *out) {
    uint32_t base = (uint32_t)(slot + 1) % (uint32_t)count;
    uint64_t value = base;
    /* Each pass runs the sequence up to the top of the uint32 range, then wraps. */
    for (int pass = 0; pass <= count; pass++) {
        if (value >= current_seq) {
            *out = (uint32_t)value;
            return true;
        }
        uint64_t steps = ((uint64_t)current_seq - value + (uint64_t)count - 1) / (uint64_t)count;
        uint64_t candidate = value + steps * (uint64_t)count;
        if (candidate <= UINT32_MAX) {
            *out = (uint32_t)candidate;
            return true;
        }
        /* Last value of this pass below 2^32, then one more step wraps around. */
        uint64_t last = value + ((UINT32_MAX - value) / (uint64_t)count) * (uint64_t)count;
        value = last + (uint64_t)count - ((uint64_t)UINT32_MAX + 1u);
    }
    return false;
}

ota_status_t sim_ota_set_boot_slot(int slot) {
    const sim_partition_t *p = slot == OTA_SLOT_NONE ? sim_ota_common_factory_partition()
                                                     : sim_ota_common_slot_partition(slot);
    if (p == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    if (!sim_ota_common_image_valid(p, false)) {
        return OTA_ERR_IMAGE_INVALID;
    }
    sim_otadata_entry_t entries[2];
    if (slot == OTA_SLOT_NONE) {
        /* Rule 10: booting the factory app erases the whole otadata partition. */
        const sim_partition_t *otadata = sim_ota_common_otadata_partition();
        if (otadata == NULL) {
            return OTA_ERR_NOT_FOUND;
        }
        sim_flash_result_t result =
            sim_flash_erase_range(sim_device()->flash, otadata->offset_bytes, otadata->size_bytes);
        return sim_ota_common_flash_status(result, OTA_ERR_SET_BOOT);
    }
    const sim_partition_t *otadata = sim_ota_common_read_otadata(entries);
    if (otadata == NULL) {
        return OTA_ERR_NOT_FOUND;
    }
    int count = sim_ota_common_app_count();
    if (slot >= count) {
        return OTA_ERR_INVALID_ARG; /* rule 17: a slot after a gap in the OTA subtypes */
    }
    int active = sim_otadata_active(entries);
    int next;
    uint32_t new_seq;
    if (active != -1) {
        if (sim_otadata_slot_of_seq(entries[active].ota_seq, count) == slot) {
            next = active; /* rule 9: the running slot's own entry is rewritten NEW */
            new_seq = entries[active].ota_seq;
        } else {
            next = active ^ 1;
            if (!next_seq_for_slot(entries[active].ota_seq, slot, count, &new_seq)) {
                sim_device_log(OTA_LOG_ERROR, TAG,
                               "no ota_seq above 0x%08x selects slot %d (ESP-IDF would hang)",
                               (unsigned)entries[active].ota_seq, slot);
                return OTA_ERR_SET_BOOT;
            }
        }
    } else {
        next = 0;
        new_seq = (uint32_t)slot + 1u;
    }
    entries[next].ota_state =
        sim_device()->config.rollback_enabled ? SIM_OTA_STATE_NEW : SIM_OTA_STATE_UNDEFINED;
    return sim_ota_common_rewrite_ota_seq(entries, new_seq, next, otadata, true);
}

bool sim_ota_rollback_possible(void) {
    sim_otadata_entry_t entries[2];
    if (sim_ota_common_read_otadata(entries) == NULL) {
        return false;
    }
    int count = sim_ota_common_app_count();
    if (count == 0) {
        return false;
    }
    bool valid[2] = {sim_otadata_entry_valid(&entries[0]), sim_otadata_entry_valid(&entries[1])};
    int active = sim_otadata_select(entries, valid, true);
    if (active == -1) {
        return false;
    }
    int last_active = active ^ 1;
    if (!valid[last_active]) {
        const sim_partition_t *factory = sim_ota_common_factory_partition();
        if (factory != NULL && sim_ota_common_image_valid(factory, true)) {
            return true;
        }
        return false;
    }
    const sim_partition_t *p =
        sim_ota_common_slot_partition(sim_otadata_slot_of_seq(entries[last_active].ota_seq, count));
    return p != NULL && sim_ota_common_image_valid(p, true);
}

/* esp_ota_current_ota_is_workable(valid) — acts on the ACTIVE entry (rule 7). */
static ota_status_t current_ota_is_workable(bool valid) {
    sim_otadata_entry_t entries[2];
    const sim_partition_t *otadata = sim_ota_common_read_otadata(entries);
    if (otadata == NULL) {
        return OTA_ERR_NOT_FOUND;
    }
    int active = sim_otadata_active(entries);
    if (active == -1 || sim_ota_common_app_count() == 0) {
        sim_device_log(OTA_LOG_ERROR, TAG, "Running firmware is factory");
        return OTA_ERR_FAIL;
    }
    if (valid) {
        if (entries[active].ota_state == SIM_OTA_STATE_VALID) {
            return OTA_OK;
        }
        entries[active].ota_state = SIM_OTA_STATE_VALID;
        sim_device_log(OTA_LOG_DEBUG, TAG, "OTA[current] partition is marked as VALID");
        return sim_ota_common_rewrite_ota_seq(entries, entries[active].ota_seq, active, otadata,
                                              false);
    }
    if (!sim_ota_rollback_possible()) {
        sim_device_log(OTA_LOG_ERROR, TAG,
                       "Rollback is not possible, do not have any suitable apps in slots");
        return OTA_ERR_ROLLBACK_FAILED; /* rule 13: nothing written */
    }
    entries[active].ota_state = SIM_OTA_STATE_INVALID;
    sim_device_log(OTA_LOG_DEBUG, TAG, "OTA[current] partition is marked as INVALID");
    ota_status_t status =
        sim_ota_common_rewrite_ota_seq(entries, entries[active].ota_seq, active, otadata, false);
    if (status != OTA_OK) {
        return status;
    }
    sim_device_log(OTA_LOG_INFO, TAG, "Rollback to previously worked partition.");
    return OTA_OK;
}

ota_status_t sim_ota_mark_valid(void) {
    return current_ota_is_workable(true);
}

ota_status_t sim_ota_mark_invalid_and_reboot(void) {
    ota_status_t status = current_ota_is_workable(false);
    if (status == OTA_OK) {
        esp_restart();
        return OTA_ERR_FAIL; /* esp_restart does not return */
    }
    return status;
}

int sim_ota_last_invalid_slot(void) {
    sim_otadata_entry_t entries[2];
    if (sim_ota_common_read_otadata(entries) == NULL) {
        return OTA_SLOT_NONE;
    }
    bool invalid[2];
    for (int i = 0; i < 2; i++) {
        invalid[i] = entries[i].ota_seq != UINT32_MAX && sim_otadata_crc_ok(&entries[i]) &&
                     (entries[i].ota_state == SIM_OTA_STATE_INVALID ||
                      entries[i].ota_state == SIM_OTA_STATE_ABORTED);
    }
    int index = sim_otadata_select(entries, invalid, false); /* rule 15: the lower seq */
    int count = sim_ota_common_app_count();
    if (index == -1 || count == 0) {
        return OTA_SLOT_NONE;
    }
    int slot = sim_otadata_slot_of_seq(entries[index].ota_seq, count);
    const sim_partition_t *p = sim_ota_common_slot_partition(slot);
    if (p == NULL || !sim_ota_common_image_valid(p, true)) {
        return OTA_SLOT_NONE;
    }
    return slot;
}

void sim_ota_chip_info(uint16_t *chip_id, uint16_t *chip_rev_full) {
    if (chip_id != NULL) {
        *chip_id = SIM_IMAGE_ESP32S3_CHIP_ID;
    }
    if (chip_rev_full != NULL) {
        *chip_rev_full = sim_device()->config.chip_rev_full;
    }
}
