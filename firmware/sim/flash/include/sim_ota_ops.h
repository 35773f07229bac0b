/*
 * sim_ota_ops.h — the sim's implementation of ota_port.h's slot half
 * (ota_port_running_slot … ota_port_chip_info) with esp_ota_ops.c's
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
 * Writes: the flash takes whole 4-byte words only, so ota_port_update_write
 * programs every complete word at once and the trailing partial word padded
 * with 0xFF; the next write reprograms that word with the real bytes (only
 * clearing bits). Every byte a write call accepted is therefore on flash
 * when it returns — a resume at any byte offset continues correctly.
 *
 * Files: sim_ota_ops.c (queries, otadata updates), sim_ota_update.c (writing
 * an image), sim_ota_common.c (shared helpers).
 *
 * ota_port_mark_invalid_and_reboot() calls ota_port_reboot() (esp_restart),
 * which the sim's port (firmware/sim/port) provides.
 */
#pragma once

#include "ota_port.h"
#include "sim_ota_update.h"
