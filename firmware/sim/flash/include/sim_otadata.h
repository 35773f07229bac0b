/*
 * sim_otadata.h — the otadata partition: two esp_ota_select_entry_t copies,
 * one at the start of each of its first two 4 KiB sectors.
 *
 * crc = crc32_le(0xFFFFFFFF, &ota_seq, 4) in the ESP ROM's convention
 * (sim_crc32_le below); seq 1 → 0x4743989A, seq 2 → 0x55F63774, and seq 0
 * gives 0xFFFFFFFF, so a seq-0 entry with the rest erased is CRC-valid.
 * The predicates mirror bootloader_common_ota_select_invalid/_valid and
 * bootloader_common_select_otadata.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim_flash.h"
#include "sim_partition_table.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_OTADATA_ENTRY_SIZE_BYTES 32u
#define SIM_OTADATA_MIN_SIZE_BYTES (2u * SIM_FLASH_SECTOR_SIZE_BYTES)

/* esp_ota_img_states_t values (same as ota_img_state_t in ota_port.h). */
#define SIM_OTA_STATE_NEW 0x0u
#define SIM_OTA_STATE_PENDING_VERIFY 0x1u
#define SIM_OTA_STATE_VALID 0x2u
#define SIM_OTA_STATE_INVALID 0x3u
#define SIM_OTA_STATE_ABORTED 0x4u
#define SIM_OTA_STATE_UNDEFINED 0xFFFFFFFFu

typedef struct {
    uint32_t ota_seq;
    uint8_t seq_label[20];
    uint32_t ota_state;
    uint32_t crc;
} sim_otadata_entry_t;

/* esp_rom_crc32_le: crc = ~crc; reflected CRC-32 (poly 0xEDB88320) over buf; return ~crc.
 * sim_crc32_le(0, "123456789", 9) == 0xCBF43926. */
uint32_t sim_crc32_le(uint32_t crc, const uint8_t *buf, size_t len);

/* crc32_le(0xFFFFFFFF, &entry->ota_seq, 4). */
uint32_t sim_otadata_crc(const sim_otadata_entry_t *entry);
/* An all-0xFF entry with ota_seq = seq, ota_state = state and the right crc. */
sim_otadata_entry_t sim_otadata_make(uint32_t seq, uint32_t state);
bool sim_otadata_crc_ok(const sim_otadata_entry_t *entry);
/* seq == 0xFFFFFFFF or state INVALID/ABORTED (no CRC check). */
bool sim_otadata_entry_invalid(const sim_otadata_entry_t *entry);
/* !invalid && crc ok. */
bool sim_otadata_entry_valid(const sim_otadata_entry_t *entry);
/* Index (0/1) among the entries flagged usable: both → the higher seq when max
 * (lower when !max), entry 0 on a tie; one → that one; none → -1. */
int sim_otadata_select(const sim_otadata_entry_t entries[2], const bool usable[2], bool max);
/* The active entry: sim_otadata_select over sim_otadata_entry_valid, max. */
int sim_otadata_active(const sim_otadata_entry_t entries[2]);
/* (seq − 1) mod slot_count in uint32 arithmetic (seq 0 → 0xFFFFFFFF mod n). */
int sim_otadata_slot_of_seq(uint32_t seq, int slot_count);

/* Serialisation of one 32-byte entry (little-endian). */
void sim_otadata_pack(const sim_otadata_entry_t *entry, uint8_t out[SIM_OTADATA_ENTRY_SIZE_BYTES]);
void sim_otadata_unpack(const uint8_t in[SIM_OTADATA_ENTRY_SIZE_BYTES], sim_otadata_entry_t *entry);

/* Reads both entries (offsets 0 and 4096 of the otadata partition). */
sim_flash_result_t sim_otadata_read(const sim_flash_t *flash, const sim_partition_t *otadata,
                                    sim_otadata_entry_t entries[2]);
/* Erases sector `index` (0/1) of otadata and writes the entry there: 2 operations. */
sim_flash_result_t sim_otadata_write(sim_flash_t *flash, const sim_partition_t *otadata, int index,
                                     const sim_otadata_entry_t *entry);

/* "new", "pending_verify", "valid", "invalid", "aborted", "undefined", or "unknown". */
const char *sim_otadata_state_name(uint32_t state);

#ifdef __cplusplus
}
#endif
