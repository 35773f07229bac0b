/*
 * sim_bootloader.h — the ESP-IDF second-stage bootloader's app selection, run
 * on the virtual device's flash (bootloader_utility.c with
 * CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE on or off, no anti-rollback, no secure
 * boot). Rules 1–6, 14, 17, 18 of esp-idf-otadata-behaviour.md; docs/sim.md.
 *
 *   1. load the partition table at 0x8000 (verify like esp_partition_table_verify);
 *   2. rollback enabled: every otadata entry whose state is PENDING_VERIFY is
 *      rewritten ABORTED (erase + write), CRC-valid or not;
 *   3. both entries "invalid" (seq 0xFFFFFFFF or INVALID/ABORTED) or no OTA
 *      slots: factory if present, else slot 0 — and when both entries are
 *      erased or CRC-bad, remember to write seq = slot + 1, VALID to sector 0
 *      once an OTA slot has loaded;
 *      otherwise the active entry (higher seq among CRC-valid usable, entry 0
 *      on a tie) gives slot (seq − 1) % ota_count; rollback enabled and state
 *      NEW → PENDING_VERIFY is written now, before the image is checked;
 *      no active entry → factory, else try every slot;
 *   4. try that index, then downwards to the factory app, then upwards through
 *      the remaining slots, then the test app; each failing image logs
 *      "OTA app partition slot N is not bootable" and nothing is written;
 *   5. nothing loads → "No bootable app partitions in the partition table".
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "sim_device.h"
#include "sim_image.h"
#include "sim_otadata.h"
#include "sim_partition_table.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ESP-IDF's bootloader indices. */
#define SIM_BOOT_INDEX_FACTORY (-1)
#define SIM_BOOT_INDEX_TEST (-2)
#define SIM_BOOT_INDEX_INVALID (-3)

typedef enum {
    SIM_BOOT_OK = 0,
    SIM_BOOT_ERR_PARTITION_TABLE, /* "Failed to verify partition table" */
    SIM_BOOT_ERR_OTADATA,         /* otadata partition smaller than 2 sectors */
    SIM_BOOT_ERR_NO_BOOTABLE_APP, /* every candidate failed validation */
} sim_boot_status_t;

typedef struct {
    int selected_index;        /* what otadata selected (before fallback) */
    int boot_index;            /* what was loaded: slot, FACTORY or TEST */
    int slot;                  /* OTA slot loaded, OTA_SLOT_NONE for factory/test */
    bool fell_back;            /* boot_index != selected_index */
    sim_partition_t partition; /* the partition loaded */
    sim_image_info_t image;    /* its header, app description, behaviour marker */
} sim_boot_result_t;

/* Runs the model on sim_device()'s flash; on SIM_BOOT_OK also records the
 * running partition in sim_device() (what esp_ota_get_running_partition
 * returns afterwards). Otherwise no app is running. */
sim_boot_status_t sim_bootloader_boot(sim_boot_result_t *result);

/* Steps 2–3 alone, as a pure function (no flash, no logging). */
typedef struct {
    int start_index;    /* where step 4 starts: a slot or SIM_BOOT_INDEX_FACTORY */
    int active_entry;   /* otadata entry that selected it, -1 if none */
    bool both_invalid;  /* both entries erased/INVALID/ABORTED (or no OTA slots) */
    bool aborted[2];    /* entries the boot rewrites PENDING_VERIFY → ABORTED (written first) */
    int marked_pending; /* entry rewritten NEW → PENDING_VERIFY, -1 if none */
    bool initial_write; /* loading an OTA slot writes seq = slot + 1, VALID to sector 0 */
} sim_boot_selection_t;

/* entries is updated to what the boot leaves in flash before loading.
 * ota_count is the bootloader's count (every ota_N partition). */
sim_boot_selection_t sim_bootloader_select(sim_otadata_entry_t entries[2], int ota_count,
                                           bool factory_present, bool rollback_enabled);

const char *sim_boot_status_str(sim_boot_status_t status);

#ifdef __cplusplus
}
#endif
