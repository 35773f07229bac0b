/* sim_test_support.h — helpers shared by the sim_flash cmocka tests. */
#pragma once

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim_bootloader.h"
#include "sim_device.h"
#include "sim_flash.h"
#include "sim_ota_ops.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"

/* Offsets of the shipped 4MB layout (fixtures/partitions_4MB.bin). */
#define T_OTADATA_OFFSET 0x1d000u
#define T_OTA0_OFFSET 0x20000u
#define T_OTA1_OFFSET 0x160000u
#define T_SLOT_SIZE 0x140000u

typedef struct {
    const char *label;
    uint8_t type;
    uint8_t subtype;
    uint32_t offset;
    uint32_t size;
} t_part_t;

/* A binary partition table (0xC00 bytes, MD5 entry when with_md5). */
void t_build_table(const t_part_t *parts, int count, bool with_md5,
                   uint8_t out[SIM_PARTITION_TABLE_MAX_LEN_BYTES]);

/* Reads a fixture (FIXTURE_DIR/name) into a malloc'd buffer; fails the test if absent. */
uint8_t *t_fixture(const char *name, size_t *len);

/* A fresh 4 MiB flash file in /tmp with the given table (NULL: the shipped 4MB fixture). */
sim_flash_t *t_flash_new(const uint8_t *table);
/* Writes a fixture image at offset (length padded to a word with 0xFF). */
void t_put_image(sim_flash_t *flash, uint32_t offset, const char *fixture);
void t_put_otadata(sim_flash_t *flash, uint32_t otadata_offset, int index,
                   const sim_otadata_entry_t *entry);
void t_get_otadata(sim_flash_t *flash, uint32_t otadata_offset, sim_otadata_entry_t entries[2]);
/* Flips one bit at offset (direct file edit, not a counted flash op). */
void t_flip_bit(sim_flash_t *flash, uint32_t offset);
void t_flash_free(sim_flash_t *flash);

/* sim_device_init with log capture; rollback on/off. */
void t_device_init(sim_flash_t *flash, bool rollback_enabled);
/* true when a captured log line since t_device_init/t_log_clear contains text. */
bool t_log_contains(const char *text);
void t_log_clear(void);

/* esp_restart() test double: longjmp()s here when t_reboot_armed. */
extern jmp_buf t_reboot_jump;
extern bool t_reboot_armed;
extern int t_reboot_count;

/* Boot and expect success; returns the slot booted. */
int t_boot(sim_boot_result_t *result);
