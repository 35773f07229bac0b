/*
 * sim_partition_table.h — ESP-IDF's binary partition table (at 0x8000).
 *
 * 32-byte entries {magic 0x50AA, type, subtype, offset, size, label[16], flags},
 * an optional MD5 entry (magic 0xEBEB, MD5 of all entries before it at byte 16),
 * ended by an entry starting 0xFF 0xFF 0xFF 0xFF. Verified like
 * esp_partition_table_verify(): every partition inside the chip, at most one
 * MD5 entry and it must match, a terminator within 0xC00 bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim_flash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_PARTITION_TABLE_OFFSET 0x8000u
#define SIM_PARTITION_TABLE_MAX_LEN_BYTES 0xC00u
#define SIM_PARTITION_ENTRY_SIZE_BYTES 32u
#define SIM_PARTITION_MAX_ENTRIES                                                                  \
    (SIM_PARTITION_TABLE_MAX_LEN_BYTES / SIM_PARTITION_ENTRY_SIZE_BYTES)
#define SIM_PARTITION_MAGIC 0x50AAu
#define SIM_PARTITION_MAGIC_MD5 0xEBEBu
#define SIM_PARTITION_MD5_OFFSET_BYTES 16u

#define SIM_PART_TYPE_APP 0x00u
#define SIM_PART_TYPE_DATA 0x01u
#define SIM_PART_SUBTYPE_FACTORY 0x00u
#define SIM_PART_SUBTYPE_OTA_FLAG 0x10u
#define SIM_PART_SUBTYPE_OTA_MASK 0x0Fu
#define SIM_PART_SUBTYPE_TEST 0x20u
#define SIM_PART_SUBTYPE_DATA_OTA 0x00u
#define SIM_PART_SUBTYPE_DATA_NVS 0x02u
#define SIM_MAX_OTA_SLOTS 16

typedef struct {
    uint8_t type;
    uint8_t subtype;
    uint32_t offset_bytes;
    uint32_t size_bytes;
    char label[17]; /* NUL-terminated copy of the 16-byte label */
    uint32_t flags;
} sim_partition_t;

typedef struct {
    sim_partition_t entries[SIM_PARTITION_MAX_ENTRIES];
    int count;
    bool has_md5;
} sim_partition_table_t;

typedef enum {
    SIM_PT_OK = 0,
    SIM_PT_ERR_SIZE,   /* a partition extends past the chip */
    SIM_PT_ERR_MD5,    /* MD5 entry wrong, or more than one */
    SIM_PT_ERR_MAGIC,  /* an entry with an unknown magic (also: empty table) */
    SIM_PT_ERR_NO_END, /* no terminating entry within 0xC00 bytes */
    SIM_PT_ERR_READ,   /* flash read failed */
} sim_pt_result_t;

/* Parses len bytes (at most 0xC00 are looked at) for a chip of chip_size_bytes.
 * why (may be NULL) gets a one-line reason on failure. */
sim_pt_result_t sim_partition_table_parse(const uint8_t *bytes, size_t len,
                                          uint32_t chip_size_bytes, sim_partition_table_t *out,
                                          char *why, size_t why_len);
/* Reads and parses the table at 0x8000 of flash. */
sim_pt_result_t sim_partition_table_load(const sim_flash_t *flash, sim_partition_table_t *out,
                                         char *why, size_t why_len);

/* First partition with this type and subtype, NULL if none. */
const sim_partition_t *sim_partition_find(const sim_partition_table_t *table, uint8_t type,
                                          uint8_t subtype);
const sim_partition_t *sim_partition_find_label(const sim_partition_table_t *table,
                                                const char *label);
/* ota_<slot> (app, subtype 0x10 + slot), NULL if absent. */
const sim_partition_t *sim_partition_ota_slot(const sim_partition_table_t *table, int slot);
/* OTA app partitions counted the bootloader's way (every app subtype 0x10..0x1F). */
int sim_partition_bootloader_ota_count(const sim_partition_table_t *table);
/* OTA app partitions counted the app's way (esp_ota_get_app_partition_count:
 * ota_0, ota_1, … up to the first missing one). */
int sim_partition_app_ota_count(const sim_partition_table_t *table);

const char *sim_pt_result_str(sim_pt_result_t result);

#ifdef __cplusplus
}
#endif
