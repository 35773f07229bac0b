/*
 * esp_ota_ops.c — components/app_update's and components/esp_partition's API on the
 * virtual board: partitions are the table the bootloader model loaded, and every esp_ota_*
 * call is the flash model's esp_ota_ops emulation (firmware/sim/flash, sim_ota_ops.h),
 * whose rules match ESP-IDF's esp_ota_ops.c. This file maps partitions to slots, handles
 * to the model's updates, and the model's ota_status_t to ESP-IDF's esp_err_t.
 */
#include "esp_ota_ops.h"

#include <pthread.h>
#include <string.h>

#include "esp_partition.h"
#include "sim_board.h"
#include "sim_device.h"
#include "sim_image.h"
#include "sim_ota_ops.h"
#include "sim_partition_table.h"

#define OTA_HANDLES_MAX 4
#define APP_DESC_OFFSET_BYTES 0x20 /* image header (24) + first segment header (8) */

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static esp_partition_t s_partitions[SIM_PARTITION_MAX_ENTRIES];
static int s_partition_count = -1;
static sim_ota_update_t *s_handles[OTA_HANDLES_MAX]; /* handle h is s_handles[h - 1] */

/* The esp_partition_t array of the loaded table (built once per boot). */
static void partitions_load(void) {
    pthread_mutex_lock(&s_lock);
    if (s_partition_count < 0 && sim_device()->table_loaded) {
        const sim_partition_table_t *table = &sim_device()->table;
        for (int i = 0; i < table->count; i++) {
            const sim_partition_t *p = &table->entries[i];
            esp_partition_t *out = &s_partitions[i];
            memset(out, 0, sizeof(*out));
            out->type = (esp_partition_type_t)p->type;
            out->subtype = (esp_partition_subtype_t)p->subtype;
            out->address = p->offset_bytes;
            out->size = p->size_bytes;
            out->erase_size = SIM_FLASH_SECTOR_SIZE_BYTES;
            memcpy(out->label, p->label, sizeof(out->label));
            out->encrypted = (p->flags & 1u) != 0;
            out->readonly = (p->flags & 2u) != 0;
        }
        s_partition_count = table->count;
    }
    pthread_mutex_unlock(&s_lock);
}

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype,
                                                const char *label) {
    partitions_load();
    for (int i = 0; i < s_partition_count; i++) {
        const esp_partition_t *p = &s_partitions[i];
        if ((type == ESP_PARTITION_TYPE_ANY || p->type == type) &&
            (subtype == ESP_PARTITION_SUBTYPE_ANY || p->subtype == subtype) &&
            (label == NULL || strcmp(label, p->label) == 0)) {
            return p;
        }
    }
    return NULL;
}

static esp_err_t partition_range(const esp_partition_t *partition, size_t offset, size_t size) {
    if (partition == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    if (offset > partition->size || size > partition->size - offset) {
        return ESP_ERR_INVALID_SIZE;
    }
    return ESP_OK;
}

static esp_err_t flash_err(sim_flash_result_t result) {
    switch (result) {
    case SIM_FLASH_OK:
        return ESP_OK;
    case SIM_FLASH_ERR_ARG:
    case SIM_FLASH_ERR_ALIGN:
        return ESP_ERR_INVALID_ARG;
    case SIM_FLASH_ERR_RANGE:
        return ESP_ERR_INVALID_SIZE;
    default:
        return ESP_FAIL;
    }
}

esp_err_t esp_partition_read(const esp_partition_t *partition, size_t src_offset, void *dst,
                             size_t size) {
    esp_err_t err = partition_range(partition, src_offset, size);
    if (err != ESP_OK || dst == NULL) {
        return err != ESP_OK ? err : ESP_ERR_INVALID_ARG;
    }
    return flash_err(
        sim_flash_read(sim_board_flash(), partition->address + (uint32_t)src_offset, dst, size));
}

esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset, const void *src,
                              size_t size) {
    esp_err_t err = partition_range(partition, dst_offset, size);
    if (err != ESP_OK || src == NULL) {
        return err != ESP_OK ? err : ESP_ERR_INVALID_ARG;
    }
    return flash_err(
        sim_flash_write(sim_board_flash(), partition->address + (uint32_t)dst_offset, src, size));
}

esp_err_t esp_partition_erase_range(const esp_partition_t *partition, size_t offset, size_t size) {
    esp_err_t err = partition_range(partition, offset, size);
    if (err != ESP_OK) {
        return err;
    }
    if (offset % SIM_FLASH_SECTOR_SIZE_BYTES != 0 || size % SIM_FLASH_SECTOR_SIZE_BYTES != 0) {
        return ESP_ERR_INVALID_SIZE;
    }
    return flash_err(sim_flash_erase_range(sim_board_flash(), partition->address + (uint32_t)offset,
                                           (uint32_t)size));
}

/* ------------------------------------------------------- slots and errors -- */

static int ota_slot_of(const esp_partition_t *partition) {
    if (partition == NULL || partition->type != ESP_PARTITION_TYPE_APP ||
        partition->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MIN ||
        partition->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MAX) {
        return OTA_SLOT_NONE;
    }
    return (int)partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN;
}

static const esp_partition_t *ota_partition_of_slot(int slot) {
    if (slot == OTA_SLOT_NONE) {
        return esp_partition_find_first(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_FACTORY,
                                        NULL);
    }
    return esp_partition_find_first(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_OTA(slot), NULL);
}

/* The model's ota_status_t as the esp_err_t esp_ota_ops.c returns (sim_ota_ops.h lists both). */
static esp_err_t ota_err(ota_status_t status) {
    switch (status) {
    case OTA_OK:
        return ESP_OK;
    case OTA_ERR_INVALID_ARG:
        return ESP_ERR_INVALID_ARG;
    case OTA_ERR_NOT_FOUND:
        return ESP_ERR_NOT_FOUND;
    case OTA_ERR_NO_MEM:
        return ESP_ERR_NO_MEM;
    case OTA_ERR_BUSY:
        return ESP_ERR_OTA_ALREADY_IN_PROGRESS;
    case OTA_ERR_PENDING_VERIFY:
        return ESP_ERR_OTA_ROLLBACK_INVALID_STATE;
    case OTA_ERR_IMAGE_TOO_LARGE:
        return ESP_ERR_INVALID_SIZE;
    case OTA_ERR_IMAGE_INVALID:
        return ESP_ERR_OTA_VALIDATE_FAILED;
    case OTA_ERR_ROLLBACK_FAILED:
        return ESP_ERR_OTA_ROLLBACK_FAILED;
    default:
        return ESP_FAIL;
    }
}

/* ------------------------------------------------------------ esp_ota_ops -- */

const esp_partition_t *esp_ota_get_running_partition(void) {
    if (!sim_device()->app_running) {
        return NULL;
    }
    const sim_partition_t *running = &sim_device()->running_partition;
    partitions_load();
    for (int i = 0; i < s_partition_count; i++) {
        if (s_partitions[i].address == running->offset_bytes) {
            return &s_partitions[i];
        }
    }
    return NULL;
}

const esp_partition_t *esp_ota_get_boot_partition(void) {
    int slot = sim_ota_boot_slot();
    return ota_partition_of_slot(slot);
}

const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from) {
    if (start_from != NULL && start_from != esp_ota_get_running_partition()) {
        return NULL; /* only the running partition is modelled as a start */
    }
    int slot = sim_ota_next_update_slot();
    return slot == OTA_SLOT_NONE ? NULL : ota_partition_of_slot(slot);
}

uint8_t esp_ota_get_app_partition_count(void) {
    partitions_load();
    return sim_device()->table_loaded ? (uint8_t)sim_partition_app_ota_count(&sim_device()->table)
                                      : 0;
}

static esp_err_t ota_handle_new(sim_ota_update_t *update, esp_ota_handle_t *out_handle) {
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < OTA_HANDLES_MAX; i++) {
        if (s_handles[i] == NULL) {
            s_handles[i] = update;
            pthread_mutex_unlock(&s_lock);
            *out_handle = (esp_ota_handle_t)(i + 1);
            return ESP_OK;
        }
    }
    pthread_mutex_unlock(&s_lock);
    sim_ota_update_abort(update);
    return ESP_ERR_NO_MEM;
}

/* The update of a handle, taken out of the table when `release`. */
static sim_ota_update_t *ota_handle_get(esp_ota_handle_t handle, bool release) {
    if (handle == 0 || handle > OTA_HANDLES_MAX) {
        return NULL;
    }
    pthread_mutex_lock(&s_lock);
    sim_ota_update_t *update = s_handles[handle - 1];
    if (release) {
        s_handles[handle - 1] = NULL;
    }
    pthread_mutex_unlock(&s_lock);
    return update;
}

static esp_err_t ota_begin_checks(const esp_partition_t *partition, int *slot) {
    if (partition == NULL || (*slot = ota_slot_of(partition)) == OTA_SLOT_NONE) {
        return ESP_ERR_INVALID_ARG;
    }
    if (partition == esp_ota_get_running_partition()) {
        return ESP_ERR_OTA_PARTITION_CONFLICT;
    }
    return ESP_OK;
}

esp_err_t esp_ota_begin(const esp_partition_t *partition, size_t image_size,
                        esp_ota_handle_t *out_handle) {
    int slot = OTA_SLOT_NONE;
    esp_err_t err = ota_begin_checks(partition, &slot);
    if (err != ESP_OK || out_handle == NULL) {
        return err != ESP_OK ? err : ESP_ERR_INVALID_ARG;
    }
    if (image_size == OTA_SIZE_UNKNOWN || image_size == OTA_WITH_SEQUENTIAL_WRITES) {
        return ESP_ERR_NOT_SUPPORTED; /* the firmware always knows the size (ota_port.h) */
    }
    sim_ota_update_t *update = NULL;
    err = ota_err(sim_ota_update_begin(slot, (uint32_t)image_size, &update));
    return err == ESP_OK ? ota_handle_new(update, out_handle) : err;
}

esp_err_t esp_ota_resume(const esp_partition_t *partition, const size_t erase_size,
                         const size_t image_offset, esp_ota_handle_t *out_handle) {
    int slot = OTA_SLOT_NONE;
    esp_err_t err = ota_begin_checks(partition, &slot);
    if (err != ESP_OK || out_handle == NULL) {
        return err != ESP_OK ? err : ESP_ERR_INVALID_ARG;
    }
    sim_ota_update_t *update = NULL;
    err =
        ota_err(sim_ota_update_resume(slot, (uint32_t)erase_size, (uint32_t)image_offset, &update));
    return err == ESP_OK ? ota_handle_new(update, out_handle) : err;
}

esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size) {
    sim_ota_update_t *update = ota_handle_get(handle, false);
    if (update == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    return ota_err(sim_ota_update_write(update, data, size));
}

esp_err_t esp_ota_end(esp_ota_handle_t handle) {
    sim_ota_update_t *update = ota_handle_get(handle, true);
    if (update == NULL) {
        return ESP_ERR_NOT_FOUND;
    }
    return ota_err(sim_ota_update_end(update));
}

esp_err_t esp_ota_abort(esp_ota_handle_t handle) {
    sim_ota_update_t *update = ota_handle_get(handle, true);
    if (update == NULL) {
        return ESP_ERR_NOT_FOUND;
    }
    sim_ota_update_abort(update);
    return ESP_OK;
}

esp_err_t esp_ota_set_boot_partition(const esp_partition_t *partition) {
    if (partition == NULL || partition->type != ESP_PARTITION_TYPE_APP) {
        return ESP_ERR_INVALID_ARG;
    }
    int slot = ota_slot_of(partition);
    if (slot == OTA_SLOT_NONE && partition->subtype != ESP_PARTITION_SUBTYPE_APP_FACTORY) {
        return ESP_ERR_INVALID_ARG;
    }
    return ota_err(sim_ota_set_boot_slot(slot));
}

esp_err_t esp_ota_get_partition_description(const esp_partition_t *partition,
                                            esp_app_desc_t *app_desc) {
    if (partition == NULL || app_desc == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    esp_err_t err =
        esp_partition_read(partition, APP_DESC_OFFSET_BYTES, app_desc, sizeof(*app_desc));
    if (err != ESP_OK) {
        return err;
    }
    return app_desc->magic_word == ESP_APP_DESC_MAGIC_WORD ? ESP_OK : ESP_ERR_NOT_FOUND;
}

esp_err_t esp_ota_get_state_partition(const esp_partition_t *partition,
                                      esp_ota_img_states_t *ota_state) {
    if (partition == NULL || ota_state == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    int slot = ota_slot_of(partition);
    if (slot == OTA_SLOT_NONE) {
        return ESP_ERR_NOT_SUPPORTED;
    }
    ota_img_state_t state;
    esp_err_t err = ota_err(sim_ota_slot_state(slot, &state));
    if (err == ESP_OK) {
        *ota_state = (esp_ota_img_states_t)state;
    }
    return err;
}

esp_err_t esp_ota_mark_app_valid_cancel_rollback(void) {
    return ota_err(sim_ota_mark_valid());
}

esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void) {
    return ota_err(sim_ota_mark_invalid_and_reboot());
}

bool esp_ota_check_rollback_is_possible(void) {
    return sim_ota_rollback_possible();
}

const esp_partition_t *esp_ota_get_last_invalid_partition(void) {
    int slot = sim_ota_last_invalid_slot();
    return slot == OTA_SLOT_NONE ? NULL : ota_partition_of_slot(slot);
}
