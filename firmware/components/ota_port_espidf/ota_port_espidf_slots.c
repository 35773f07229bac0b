/*
 * ota_port_espidf_slots.c — OTA slots of ota_port.h on esp_ota_ops / esp_partition.
 *
 * Slot i is the app partition of subtype ota_i. Every function is a thin call
 * into app_update, so the otadata rules are ESP-IDF's own (see
 * ../shared/design/esp-idf-otadata-behaviour.md).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_chip_info.h"
#include "esp_efuse.h"
#include "esp_err.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "sdkconfig.h"

#include "ota_port.h"
#include "ota_port_espidf_priv.h"

static const char *TAG = OTA_PORT_ESPIDF_TAG;

struct ota_port_update {
    esp_ota_handle_t handle;
    const esp_partition_t *partition;
};

/* Flash encryption writes 16-byte blocks; a resume must start on one. */
#define SLOTS_ENCRYPTED_WRITE_BLOCK_BYTES 16u

ota_status_t ota_port_espidf_status_from_esp_err(esp_err_t err, ota_status_t fallback) {
    switch (err) {
    case ESP_OK:
        return OTA_OK;
    case ESP_ERR_NO_MEM:
        return OTA_ERR_NO_MEM;
    case ESP_ERR_INVALID_ARG:
        return OTA_ERR_INVALID_ARG;
    case ESP_ERR_NOT_FOUND:
        return OTA_ERR_NOT_FOUND;
    case ESP_ERR_TIMEOUT:
        return OTA_ERR_TIMEOUT;
    case ESP_ERR_NOT_SUPPORTED:
        return OTA_ERR_NOT_SUPPORTED;
    case ESP_ERR_OTA_ROLLBACK_INVALID_STATE:
        return OTA_ERR_PENDING_VERIFY;
    case ESP_ERR_OTA_ALREADY_IN_PROGRESS:
        return OTA_ERR_BUSY;
    case ESP_ERR_OTA_VALIDATE_FAILED:
        return OTA_ERR_IMAGE_INVALID;
    case ESP_ERR_OTA_ROLLBACK_FAILED:
        return OTA_ERR_ROLLBACK_FAILED;
    case ESP_ERR_OTA_SMALL_SEC_VER:
        return OTA_ERR_SECURE_VERSION;
    default:
        return fallback;
    }
}

static int slots_slot_of(const esp_partition_t *partition) {
    if (partition == NULL || partition->type != ESP_PARTITION_TYPE_APP) {
        return OTA_SLOT_NONE;
    }
    if (partition->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MIN ||
        partition->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MAX) {
        return OTA_SLOT_NONE;
    }
    return (int)partition->subtype - (int)ESP_PARTITION_SUBTYPE_APP_OTA_MIN;
}

static const esp_partition_t *slots_partition_of(int slot) {
    if (slot < 0 || slot >= (int)esp_ota_get_app_partition_count()) {
        return NULL;
    }
    return esp_partition_find_first(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_OTA(slot), NULL);
}

int ota_port_running_slot(void) {
    return slots_slot_of(esp_ota_get_running_partition());
}

int ota_port_boot_slot(void) {
    return slots_slot_of(esp_ota_get_boot_partition());
}

int ota_port_next_update_slot(void) {
    return slots_slot_of(esp_ota_get_next_update_partition(NULL));
}

ota_status_t ota_port_slot_size(int slot, uint32_t *size_bytes) {
    const esp_partition_t *partition = slots_partition_of(slot);
    if (partition == NULL || size_bytes == NULL) {
        return partition == NULL ? OTA_ERR_NOT_FOUND : OTA_ERR_INVALID_ARG;
    }
    *size_bytes = partition->size;
    return OTA_OK;
}

ota_status_t ota_port_slot_state(int slot, ota_img_state_t *state) {
    const esp_partition_t *partition = slots_partition_of(slot);
    if (partition == NULL || state == NULL) {
        return partition == NULL ? OTA_ERR_NOT_FOUND : OTA_ERR_INVALID_ARG;
    }
    esp_ota_img_states_t esp_state = ESP_OTA_IMG_UNDEFINED;
    esp_err_t err = esp_ota_get_state_partition(partition, &esp_state);
    if (err != ESP_OK) {
        /* ESP_ERR_NOT_FOUND: otadata has no entry for this slot. */
        return ota_port_espidf_status_from_esp_err(err, OTA_ERR_FLASH_READ);
    }
    *state = (ota_img_state_t)esp_state;
    return OTA_OK;
}

ota_status_t ota_port_slot_app_desc(int slot, ota_app_desc_t *desc) {
    const esp_partition_t *partition = slots_partition_of(slot);
    if (partition == NULL || desc == NULL) {
        return partition == NULL ? OTA_ERR_NOT_FOUND : OTA_ERR_INVALID_ARG;
    }
    esp_app_desc_t app_desc;
    esp_err_t err = esp_ota_get_partition_description(partition, &app_desc);
    if (err != ESP_OK) {
        /* ESP_ERR_NOT_FOUND: no image; ESP_ERR_INVALID_STATE: bad app_desc magic. */
        return err == ESP_ERR_NOT_FOUND ? OTA_ERR_NOT_FOUND : OTA_ERR_IMAGE_HEADER;
    }
    memset(desc, 0, sizeof(*desc));
    /* esp_app_desc_t strings are NUL-padded but not guaranteed terminated. */
    memcpy(desc->version, app_desc.version, sizeof(desc->version) - 1);
    memcpy(desc->project_name, app_desc.project_name, sizeof(desc->project_name) - 1);
    memcpy(desc->idf_ver, app_desc.idf_ver, sizeof(desc->idf_ver) - 1);
    desc->secure_version = app_desc.secure_version;
    return OTA_OK;
}

ota_status_t ota_port_slot_read(int slot, uint32_t offset_bytes, void *buf, size_t len) {
    const esp_partition_t *partition = slots_partition_of(slot);
    if (partition == NULL || buf == NULL) {
        return partition == NULL ? OTA_ERR_NOT_FOUND : OTA_ERR_INVALID_ARG;
    }
    esp_err_t err = esp_partition_read(partition, offset_bytes, buf, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "read of slot %d at %" PRIu32 " failed: %s", slot, offset_bytes,
                 esp_err_to_name(err));
        return ota_port_espidf_status_from_esp_err(err, OTA_ERR_FLASH_READ);
    }
    return OTA_OK;
}

static ota_status_t slots_new_update(const esp_partition_t *partition, uint32_t image_size_bytes,
                                     ota_port_update_t **out) {
    if (partition == NULL) {
        return OTA_ERR_NO_UPDATE_SLOT;
    }
    if (image_size_bytes == 0) {
        return OTA_ERR_INVALID_ARG;
    }
    if (image_size_bytes > partition->size) {
        ESP_LOGE(TAG, "image of %" PRIu32 " bytes does not fit %s (%" PRIu32 " bytes)",
                 image_size_bytes, partition->label, partition->size);
        return OTA_ERR_IMAGE_TOO_LARGE;
    }
    ota_port_update_t *update = calloc(1, sizeof(*update));
    if (update == NULL) {
        return OTA_ERR_NO_MEM;
    }
    update->partition = partition;
    *out = update;
    return OTA_OK;
}

ota_status_t ota_port_update_begin(int slot, uint32_t image_size_bytes, ota_port_update_t **out) {
    if (out == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    ota_port_update_t *update = NULL;
    ota_status_t status = slots_new_update(slots_partition_of(slot), image_size_bytes, &update);
    if (status != OTA_OK) {
        return status;
    }
    esp_err_t err = esp_ota_begin(update->partition, image_size_bytes, &update->handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_begin(%s, %" PRIu32 ") failed: %s", update->partition->label,
                 image_size_bytes, esp_err_to_name(err));
        free(update);
        return ota_port_espidf_status_from_esp_err(err, OTA_ERR_FLASH_ERASE);
    }
    *out = update;
    return OTA_OK;
}

ota_status_t ota_port_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                    ota_port_update_t **out) {
    if (out == NULL || offset_bytes > image_size_bytes) {
        return OTA_ERR_INVALID_ARG;
    }
    if (esp_efuse_is_flash_encryption_enabled() &&
        (offset_bytes % SLOTS_ENCRYPTED_WRITE_BLOCK_BYTES) != 0) {
        /* esp_ota_write buffers a partial 16-byte block in RAM: it never reached flash. */
        ESP_LOGW(TAG, "resume offset %" PRIu32 " is not 16-byte aligned under flash encryption",
                 offset_bytes);
        return OTA_ERR_INVALID_ARG;
    }
    ota_port_update_t *update = NULL;
    ota_status_t status = slots_new_update(slots_partition_of(slot), image_size_bytes, &update);
    if (status != OTA_OK) {
        return status;
    }
    /* erase_size other than OTA_WITH_SEQUENTIAL_WRITES: esp_ota_resume erases nothing;
     * esp_ota_begin erased the whole image area when the download started. */
    esp_err_t err =
        esp_ota_resume(update->partition, image_size_bytes, offset_bytes, &update->handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_resume(%s, %" PRIu32 ") failed: %s", update->partition->label,
                 offset_bytes, esp_err_to_name(err));
        free(update);
        return ota_port_espidf_status_from_esp_err(err, OTA_ERR_FAIL);
    }
    *out = update;
    return OTA_OK;
}

ota_status_t ota_port_update_write(ota_port_update_t *update, const void *data, size_t len) {
    if (update == NULL || (data == NULL && len > 0)) {
        return OTA_ERR_INVALID_ARG;
    }
    esp_err_t err = esp_ota_write(update->handle, data, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_write(%u bytes) failed: %s", (unsigned)len, esp_err_to_name(err));
        /* ESP_ERR_OTA_VALIDATE_FAILED here means the first byte is not the image magic. */
        return err == ESP_ERR_OTA_VALIDATE_FAILED
                   ? OTA_ERR_IMAGE_HEADER
                   : ota_port_espidf_status_from_esp_err(err, OTA_ERR_FLASH_WRITE);
    }
    return OTA_OK;
}

ota_status_t ota_port_update_end(ota_port_update_t *update) {
    if (update == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    esp_err_t err = esp_ota_end(update->handle);
    const char *label = update->partition->label;
    free(update);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_end(%s) failed: %s", label, esp_err_to_name(err));
        if (err == ESP_ERR_INVALID_STATE) {
            return OTA_ERR_FLASH_WRITE; /* the final encrypted block could not be written */
        }
        return ota_port_espidf_status_from_esp_err(err, OTA_ERR_IMAGE_INVALID);
    }
    return OTA_OK;
}

void ota_port_update_abort(ota_port_update_t *update) {
    if (update == NULL) {
        return;
    }
    esp_err_t err = esp_ota_abort(update->handle);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "esp_ota_abort: %s", esp_err_to_name(err));
    }
    free(update);
}

ota_status_t ota_port_set_boot_slot(int slot) {
    const esp_partition_t *partition = slots_partition_of(slot);
    if (partition == NULL) {
        return OTA_ERR_NOT_FOUND;
    }
    esp_err_t err = esp_ota_set_boot_partition(partition);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_set_boot_partition(%s) failed: %s", partition->label,
                 esp_err_to_name(err));
        return err == ESP_ERR_OTA_VALIDATE_FAILED ? OTA_ERR_IMAGE_INVALID : OTA_ERR_SET_BOOT;
    }
    return OTA_OK;
}

ota_status_t ota_port_mark_valid(void) {
    esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_mark_app_valid_cancel_rollback failed: %s", esp_err_to_name(err));
        return ota_port_espidf_status_from_esp_err(err, OTA_ERR_FLASH_WRITE);
    }
    return OTA_OK;
}

ota_status_t ota_port_mark_invalid_and_reboot(void) {
    esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();
    /* Only reached on failure: ESP_ERR_OTA_ROLLBACK_FAILED when no other app is bootable. */
    ESP_LOGE(TAG, "esp_ota_mark_app_invalid_rollback_and_reboot failed: %s", esp_err_to_name(err));
    return ota_port_espidf_status_from_esp_err(err, OTA_ERR_ROLLBACK_FAILED);
}

bool ota_port_rollback_possible(void) {
    return esp_ota_check_rollback_is_possible();
}

int ota_port_last_invalid_slot(void) {
    return slots_slot_of(esp_ota_get_last_invalid_partition());
}

void ota_port_chip_info(uint16_t *chip_id, uint16_t *chip_rev_full) {
    esp_chip_info_t info;
    esp_chip_info(&info);
    if (chip_id != NULL) {
        *chip_id = (uint16_t)CONFIG_IDF_FIRMWARE_CHIP_ID;
    }
    if (chip_rev_full != NULL) {
        *chip_rev_full = info.revision; /* major * 100 + minor, as in the image header */
    }
}
