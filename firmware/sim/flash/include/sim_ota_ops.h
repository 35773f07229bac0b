/*
 * sim_ota_ops.h — the sim's implementation of ota_port.h's slot half
 * (sim_ota_running_slot … sim_ota_chip_info) with esp_ota_ops.c's
 * observable behaviour, rules 7–16 of esp-idf-otadata-behaviour.md, traps
 * included (docs/sim.md, "esp_ota_ops emulation"). They act on sim_device().
 *
 * esp_err_t → ota_status_t:
 *   ESP_ERR_INVALID_ARG / _NOT_SUPPORTED         → OTA_ERR_INVALID_ARG
 *   ESP_ERR_NOT_FOUND                              → OTA_ERR_NOT_FOUND
 *   ESP_ERR_OTA_PARTITION_CONFLICT (running slot)  → OTA_ERR_BUSY
 *   ESP_ERR_OTA_ALREADY_IN_PROGRESS                → OTA_ERR_BUSY
 *   ESP_ERR_OTA_ROLLBACK_INVALID_STATE             → OTA_ERR_PENDING_VERIFY
 *   erase range past the slot (image too large)    → OTA_ERR_IMAGE_TOO_LARGE
 *   esp_partition_erase_range failure              → OTA_ERR_FLASH_ERASE
 *   esp_partition_write failure                    → OTA_ERR_FLASH_WRITE
 *   first byte not 0xE9 / esp_image_verify failure → OTA_ERR_IMAGE_INVALID
 *   set_boot_slot: validation → OTA_ERR_IMAGE_INVALID, otadata erase/write → OTA_ERR_SET_BOOT
 *   ESP_ERR_OTA_ROLLBACK_FAILED                    → OTA_ERR_ROLLBACK_FAILED
 *   ESP_FAIL "Running firmware is factory"         → OTA_ERR_FAIL
 *   no app booted yet (sim_bootloader_boot not run) → OTA_ERR_FAIL / OTA_SLOT_NONE
 *
 * Writes: the flash takes whole 4-byte words only, so sim_ota_update_write
 * programs every complete word at once and the trailing partial word padded
 * with what the flash holds after it (0xFF when erased; after a resume, the
 * bytes an interrupted run wrote there, which a real NOR chip keeps when
 * programmed with 1s); the next write reprograms that word with the real
 * bytes (only clearing bits). Every byte a write call accepted is therefore on flash
 * when it returns — a resume at any byte offset continues correctly.
 *
 * Files: sim_ota_ops.c (queries, otadata updates), sim_ota_update.c (writing
 * an image), sim_ota_common.c (shared helpers).
 *
 * sim_ota_mark_invalid_and_reboot() calls esp_restart(), as esp_ota_ops.c does; the
 * host layer (firmware/sim/idf) provides it, and maps these functions to ESP-IDF's
 * esp_ota_* / esp_partition_* names (src/esp_ota_ops.c there). Slots are numbered like
 * ota_port.h's (OTA_SLOT_NONE for factory), errors are ota_status_t as listed above.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_port.h"
#include "sim_ota_update.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sim_ota_update sim_ota_update_t;

int sim_ota_running_slot(void);
int sim_ota_boot_slot(void);
int sim_ota_next_update_slot(void);
ota_status_t sim_ota_slot_size(int slot, uint32_t *size_bytes);
ota_status_t sim_ota_slot_state(int slot, ota_img_state_t *state);
ota_status_t sim_ota_slot_app_desc(int slot, ota_app_desc_t *desc);
ota_status_t sim_ota_slot_read(int slot, uint32_t offset_bytes, void *buf, size_t len);
ota_status_t sim_ota_update_begin(int slot, uint32_t image_size_bytes, sim_ota_update_t **out);
ota_status_t sim_ota_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                   sim_ota_update_t **out);
ota_status_t sim_ota_update_write(sim_ota_update_t *update, const void *data, size_t len);
ota_status_t sim_ota_update_end(sim_ota_update_t *update);
void sim_ota_update_abort(sim_ota_update_t *update);
ota_status_t sim_ota_set_boot_slot(int slot);
ota_status_t sim_ota_mark_valid(void);
ota_status_t sim_ota_mark_invalid_and_reboot(void);
bool sim_ota_rollback_possible(void);
int sim_ota_last_invalid_slot(void);
void sim_ota_chip_info(uint16_t *chip_id, uint16_t *chip_rev_full);

/* esp_restart(): provided by the board (the host layer) or the unit tests. */
void esp_restart(void);

#ifdef __cplusplus
}
#endif
