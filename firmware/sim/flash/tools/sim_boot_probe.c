/*
 * sim_boot_probe — runs the bootloader model on many otadata states, for the
 * differential test against the Python reference (tests/test_sim_bootmodel.py at the repository
 * root).
 *
 *   sim_boot_probe FLASH < states
 *
 * Each input line: "SEQ0 STATE0 CRC0 SEQ1 STATE1 CRC1 ROLLBACK" (numbers, any
 * base strtoul accepts). The two entries are written to otadata (label 0xFF),
 * the model boots once, and one line is printed:
 *   "SELECTED BOOTED SEQ0 STATE0 CRC0 SEQ1 STATE1 CRC1" (otadata after the boot;
 *   BOOTED is -100 when nothing was bootable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_port.h"
#include "sim_bootloader.h"
#include "sim_device.h"
#include "sim_flash.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"

#define PROBE_NOT_BOOTED (-100)

/* The bootloader model never reboots; sim_ota_mark_invalid_and_reboot is not used here. */
void esp_restart(void) {
    exit(3);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FLASH < states\n", argv[0]);
        return 2;
    }
    sim_flash_t *flash = NULL;
    if (sim_flash_open(argv[1], &flash) != SIM_FLASH_OK) {
        fprintf(stderr, "%s: cannot open flash file\n", argv[1]);
        return 2;
    }
    sim_partition_table_t table;
    char why[128];
    if (sim_partition_table_load(flash, &table, why, sizeof(why)) != SIM_PT_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], why);
        return 2;
    }
    const sim_partition_t *otadata =
        sim_partition_find(&table, SIM_PART_TYPE_DATA, SIM_PART_SUBTYPE_DATA_OTA);
    if (otadata == NULL) {
        fprintf(stderr, "%s: no otadata partition\n", argv[1]);
        return 2;
    }
    char line[256];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        long v[7];
        if (sscanf(line, "%li %li %li %li %li %li %li", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6]) != 7) {
            fprintf(stderr, "bad input line: %s", line);
            return 2;
        }
        for (int i = 0; i < 2; i++) {
            sim_otadata_entry_t entry;
            memset(&entry, 0xFF, sizeof(entry));
            entry.ota_seq = (uint32_t)v[3 * i];
            entry.ota_state = (uint32_t)v[3 * i + 1];
            entry.crc = (uint32_t)v[3 * i + 2];
            if (sim_otadata_write(flash, otadata, i, &entry) != SIM_FLASH_OK) {
                fprintf(stderr, "otadata write failed\n");
                return 1;
            }
        }
        sim_device_config_t config = sim_device_default_config();
        config.rollback_enabled = v[6] != 0;
        sim_device_init(flash, &config);
        sim_boot_result_t result;
        sim_boot_status_t status = sim_bootloader_boot(&result);
        sim_otadata_entry_t after[2];
        sim_otadata_read(flash, otadata, after);
        printf("%d %d %lu %lu %lu %lu %lu %lu\n",
               status == SIM_BOOT_OK ? result.selected_index : PROBE_NOT_BOOTED,
               status == SIM_BOOT_OK ? result.boot_index : PROBE_NOT_BOOTED,
               (unsigned long)after[0].ota_seq, (unsigned long)after[0].ota_state,
               (unsigned long)after[0].crc, (unsigned long)after[1].ota_seq,
               (unsigned long)after[1].ota_state, (unsigned long)after[1].crc);
        fflush(stdout);
    }
    sim_flash_close(flash);
    return 0;
}
