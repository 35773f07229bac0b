/*
 * sim_ota_update.c — writing an image into a slot: esp_ota_begin / esp_ota_resume /
 * esp_ota_write / esp_ota_end / esp_ota_abort on the virtual device's NOR flash.
 */
#include "sim_ota_update.h"
#include "sim_ota_ops.h"

#include <stdlib.h>
#include <string.h>

#include "sim_device.h"
#include "sim_image.h"
#include "sim_ota_common.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"

static const char *TAG = "esp_ota_ops";

struct sim_ota_update {
    sim_partition_t partition;
    uint32_t image_size_bytes;
    uint32_t wrote_size_bytes;
    /* The word holding byte wrote_size_bytes when it is not word-aligned: the
     * bytes already written, 0xFF after them (as programmed on flash). */
    uint8_t tail[SIM_FLASH_WRITE_ALIGN_BYTES];
    struct sim_ota_update *next;
};

static struct sim_ota_update *s_updates;

void sim_ota_update_reset_all(void) {
    while (s_updates != NULL) {
        struct sim_ota_update *next = s_updates->next;
        free(s_updates);
        s_updates = next;
    }
}

int sim_ota_update_open_count(void) {
    int count = 0;
    for (struct sim_ota_update *it = s_updates; it != NULL; it = it->next) {
        count++;
    }
    return count;
}

/* Like ESP-IDF's handle lookup: a handle from before a reboot (or already ended) is unknown. */
static bool update_is_open(const struct sim_ota_update *update) {
    for (struct sim_ota_update *it = s_updates; it != NULL; it = it->next) {
        if (it == update) {
            return true;
        }
    }
    return false;
}

static bool update_in_progress(const sim_partition_t *p) {
    for (struct sim_ota_update *it = s_updates; it != NULL; it = it->next) {
        if (sim_ota_common_same_partition(&it->partition, p)) {
            return true;
        }
    }
    return false;
}

static void forget_update(struct sim_ota_update *update) {
    for (struct sim_ota_update **link = &s_updates; *link != NULL; link = &(*link)->next) {
        if (*link == update) {
            *link = update->next;
            free(update);
            return;
        }
    }
}

/* Checks shared by esp_ota_begin and esp_ota_resume (partition, running app, state, conflicts). */
static ota_status_t check_update_target(int slot, const sim_partition_t **out) {
    const sim_partition_t *p = sim_ota_common_slot_partition(slot);
    if (p == NULL) {
        return OTA_ERR_NOT_FOUND;
    }
    const sim_partition_t *running = sim_ota_common_running_partition();
    if (sim_ota_common_same_partition(p, running)) {
        return OTA_ERR_BUSY; /* ESP_ERR_OTA_PARTITION_CONFLICT */
    }
    if (sim_device()->config.rollback_enabled) {
        ota_img_state_t running_state;
        int running_slot = sim_ota_common_slot_of_partition(running);
        if (running_slot != OTA_SLOT_NONE &&
            sim_ota_slot_state(running_slot, &running_state) == OTA_OK &&
            running_state == OTA_IMG_PENDING_VERIFY) {
            sim_device_log(OTA_LOG_ERROR, TAG,
                           "Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)");
            return OTA_ERR_PENDING_VERIFY;
        }
    }
    if (update_in_progress(p)) {
        sim_device_log(OTA_LOG_ERROR, TAG, "OTA operation already in progress on partition %s",
                       p->label);
        return OTA_ERR_BUSY;
    }
    *out = p;
    return OTA_OK;
}

static struct sim_ota_update *new_update(const sim_partition_t *p, uint32_t image_size_bytes) {
    struct sim_ota_update *update = calloc(1, sizeof(*update));
    if (update == NULL) {
        return NULL;
    }
    update->partition = *p;
    update->image_size_bytes = image_size_bytes;
    memset(update->tail, 0xFF, sizeof(update->tail));
    update->next = s_updates;
    s_updates = update;
    return update;
}

/* esp_ota_invalidate_inactive_ota_data_slot (rule 11): errors are ignored. */
static void invalidate_inactive_otadata(void) {
    sim_otadata_entry_t entries[2];
    const sim_partition_t *otadata = sim_ota_common_read_otadata(entries);
    int count = sim_ota_common_app_count();
    if (otadata == NULL || count == 0) {
        return;
    }
    int active = sim_otadata_active(entries);
    if (active == -1) {
        return;
    }
    int inactive = active ^ 1;
    if (entries[inactive].ota_seq == UINT32_MAX || !sim_otadata_crc_ok(&entries[inactive])) {
        return;
    }
    const sim_partition_t *last_boot =
        sim_ota_common_slot_partition(sim_otadata_slot_of_seq(entries[inactive].ota_seq, count));
    const sim_partition_t *running = sim_ota_common_running_partition();
    if (last_boot == NULL || running == NULL || sim_ota_common_same_partition(last_boot, running)) {
        return;
    }
    (void)sim_flash_erase_sector(sim_device()->flash,
                                 otadata->offset_bytes +
                                     (uint32_t)inactive * SIM_FLASH_SECTOR_SIZE_BYTES);
}

ota_status_t sim_ota_update_begin(int slot, uint32_t image_size_bytes, sim_ota_update_t **out) {
    if (out == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    const sim_partition_t *p = NULL;
    ota_status_t status = check_update_target(slot, &p);
    if (status != OTA_OK) {
        return status;
    }
    uint64_t erase_bytes = image_size_bytes == 0
                               ? p->size_bytes
                               : ((uint64_t)image_size_bytes + SIM_FLASH_SECTOR_SIZE_BYTES - 1) /
                                     SIM_FLASH_SECTOR_SIZE_BYTES * SIM_FLASH_SECTOR_SIZE_BYTES;
    if (erase_bytes > p->size_bytes) {
        return OTA_ERR_IMAGE_TOO_LARGE;
    }
    struct sim_ota_update *update = new_update(p, image_size_bytes);
    if (update == NULL) {
        return OTA_ERR_NO_MEM;
    }
    sim_flash_result_t erased =
        sim_flash_erase_range(sim_device()->flash, p->offset_bytes, (uint32_t)erase_bytes);
    if (erased != SIM_FLASH_OK) {
        /* esp_ota_begin leaves its entry registered here; a port must esp_ota_abort() it. */
        forget_update(update);
        return OTA_ERR_FLASH_ERASE;
    }
    if (sim_device()->config.rollback_enabled) {
        invalidate_inactive_otadata();
    }
    *out = update;
    return OTA_OK;
}

ota_status_t sim_ota_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                   sim_ota_update_t **out) {
    if (out == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    const sim_partition_t *p = sim_ota_common_slot_partition(slot);
    if (p != NULL && (offset_bytes > p->size_bytes || offset_bytes > image_size_bytes)) {
        return OTA_ERR_INVALID_ARG;
    }
    if (p != NULL && image_size_bytes > p->size_bytes) {
        return OTA_ERR_IMAGE_TOO_LARGE;
    }
    ota_status_t status = check_update_target(slot, &p);
    if (status != OTA_OK) {
        return status;
    }
    struct sim_ota_update *update = new_update(p, image_size_bytes);
    if (update == NULL) {
        return OTA_ERR_NO_MEM;
    }
    update->wrote_size_bytes = offset_bytes;
    uint32_t in_word = offset_bytes % SIM_FLASH_WRITE_ALIGN_BYTES;
    if (in_word != 0) {
        uint32_t word_offset = p->offset_bytes + offset_bytes - in_word;
        if (sim_flash_read(sim_device()->flash, word_offset, update->tail, sizeof(update->tail)) !=
            SIM_FLASH_OK) {
            forget_update(update);
            return OTA_ERR_FLASH_READ;
        }
    }
    *out = update;
    return OTA_OK;
}

static ota_status_t program(struct sim_ota_update *update, uint32_t at_bytes, const void *data,
                            size_t len) {
    if ((uint64_t)at_bytes + len > update->partition.size_bytes) {
        return OTA_ERR_IMAGE_TOO_LARGE;
    }
    sim_flash_result_t result =
        sim_flash_write(sim_device()->flash, update->partition.offset_bytes + at_bytes, data, len);
    return sim_ota_common_flash_status(result, OTA_ERR_FLASH_WRITE);
}

ota_status_t sim_ota_update_write(sim_ota_update_t *update, const void *data, size_t len) {
    if (data == NULL) {
        sim_device_log(OTA_LOG_ERROR, TAG, "write data is invalid");
        return OTA_ERR_INVALID_ARG;
    }
    if (!update_is_open(update)) {
        sim_device_log(OTA_LOG_ERROR, TAG, "not found the handle");
        return OTA_ERR_INVALID_ARG;
    }
    if (len == 0) {
        return OTA_OK;
    }
    const uint8_t *bytes = data;
    if (update->wrote_size_bytes == 0 && bytes[0] != SIM_IMAGE_MAGIC) {
        sim_device_log(OTA_LOG_ERROR, TAG,
                       "OTA image has invalid magic byte (expected 0xE9, saw 0x%02x)", bytes[0]);
        return OTA_ERR_IMAGE_INVALID;
    }
    while (len > 0) {
        uint32_t in_word = update->wrote_size_bytes % SIM_FLASH_WRITE_ALIGN_BYTES;
        if (in_word == 0 && len >= SIM_FLASH_WRITE_ALIGN_BYTES) {
            size_t whole = len - len % SIM_FLASH_WRITE_ALIGN_BYTES;
            ota_status_t status = program(update, update->wrote_size_bytes, bytes, whole);
            if (status != OTA_OK) {
                return status;
            }
            update->wrote_size_bytes += (uint32_t)whole;
            bytes += whole;
            len -= whole;
            continue;
        }
        /* A partial word: program it padded with what the flash holds after it (0xFF when
         * erased; after a resume, bytes an interrupted run already wrote, which a real NOR
         * chip keeps when programmed with 1s); later bytes reprogram it. */
        if (in_word == 0 &&
            sim_flash_read(sim_device()->flash,
                           update->partition.offset_bytes + update->wrote_size_bytes, update->tail,
                           sizeof(update->tail)) != SIM_FLASH_OK) {
            return OTA_ERR_FLASH_READ;
        }
        size_t take = SIM_FLASH_WRITE_ALIGN_BYTES - in_word;
        if (take > len) {
            take = len;
        }
        uint8_t word[SIM_FLASH_WRITE_ALIGN_BYTES];
        memcpy(word, update->tail, sizeof(word));
        memcpy(word + in_word, bytes, take);
        ota_status_t status =
            program(update, update->wrote_size_bytes - in_word, word, sizeof(word));
        if (status != OTA_OK) {
            return status;
        }
        memcpy(update->tail, word, sizeof(word));
        update->wrote_size_bytes += (uint32_t)take;
        bytes += take;
        len -= take;
    }
    return OTA_OK;
}

ota_status_t sim_ota_update_end(sim_ota_update_t *update) {
    if (!update_is_open(update)) {
        return OTA_ERR_INVALID_ARG;
    }
    ota_status_t status = OTA_OK;
    if (update->wrote_size_bytes == 0) {
        status = OTA_ERR_INVALID_ARG;
    } else if (!sim_ota_common_image_valid(&update->partition, false)) {
        sim_device_log(OTA_LOG_ERROR, TAG, "New image failed verification");
        status = OTA_ERR_IMAGE_INVALID;
    }
    forget_update(update);
    return status;
}

void sim_ota_update_abort(sim_ota_update_t *update) {
    if (update != NULL) {
        forget_update(update);
    }
}
