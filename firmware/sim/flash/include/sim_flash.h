/*
 * sim_flash.h — the virtual ESP32-S3's SPI NOR flash, backed by a file.
 *
 * Rules (docs/sim.md, "Flash model"):
 *   - size 4, 8 or 16 MiB (the file's size); 4 KiB sectors;
 *   - erase works on whole sectors and sets every byte to 0xFF;
 *   - a write may only clear bits: programming a 1 over a 0 fails with
 *     SIM_FLASH_ERR_NOT_ERASED and changes nothing (rewriting the same bytes,
 *     or clearing more bits, is allowed — ESP-IDF's NVS relies on it);
 *   - writes must start on and cover whole 4-byte words (the ESP32-S3 ROM's
 *     esp_rom_spiflash_write contract); anything else is SIM_FLASH_ERR_ALIGN;
 *   - every erase of a sector and every write call is one numbered operation
 *     (1, 2, 3, … over the life of the process); sim_flash_count_op() adds
 *     operations that live outside this flash (the KV store).
 *   - fault injection: operations [first, first + count) fail with
 *     SIM_FLASH_ERR_INJECTED and change nothing; a power cut at operation N
 *     performs that operation torn (or not at all), prints
 *     "POWER CUT at flash op N (...)" on stdout and _exit()s with
 *     SIM_FLASH_POWER_CUT_EXIT_CODE.
 *
 * The file is mapped MAP_SHARED, so every completed byte is in the kernel's
 * page cache the moment the call returns and survives the process exit.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_FLASH_SECTOR_SIZE_BYTES 4096u
#define SIM_FLASH_WRITE_ALIGN_BYTES 4u
/* EX_TEMPFAIL: the process "lost power"; run it again on the same flash file. */
#define SIM_FLASH_POWER_CUT_EXIT_CODE 75

typedef enum {
    SIM_FLASH_OK = 0,
    SIM_FLASH_ERR_ARG,        /* NULL pointer, bad size */
    SIM_FLASH_ERR_RANGE,      /* outside the chip */
    SIM_FLASH_ERR_ALIGN,      /* write not word-aligned, erase not sector-aligned */
    SIM_FLASH_ERR_NOT_ERASED, /* a write would turn a 0 bit into 1 */
    SIM_FLASH_ERR_INJECTED,   /* failure injected by sim_flash_set_fail_ops */
    SIM_FLASH_ERR_IO,         /* the backing file could not be opened/mapped */
} sim_flash_result_t;

typedef enum {
    /* Default. Write: the first half of its words (rounded down) is programmed.
     * Erase: the first half of the sector (2 KiB) becomes 0xFF. */
    SIM_FLASH_CUT_TORN = 0,
    /* The cut operation is not performed at all. */
    SIM_FLASH_CUT_BEFORE = 1,
} sim_flash_cut_mode_t;

typedef struct sim_flash sim_flash_t;

/* Opens (read-write) an existing flash file of 4, 8 or 16 MiB. */
sim_flash_result_t sim_flash_open(const char *path, sim_flash_t **out);
/* Creates (or truncates) path as an erased chip of size_bytes (4/8/16 MiB) and opens it. */
sim_flash_result_t sim_flash_create(const char *path, uint32_t size_bytes, sim_flash_t **out);
void sim_flash_close(sim_flash_t *flash);

uint32_t sim_flash_size_bytes(const sim_flash_t *flash);

/* Reads are not operations (no counter, no faults). */
sim_flash_result_t sim_flash_read(const sim_flash_t *flash, uint32_t offset_bytes, void *buf,
                                  size_t len);
/* One operation. len == 0 is a no-op (not counted). */
sim_flash_result_t sim_flash_write(sim_flash_t *flash, uint32_t offset_bytes, const void *data,
                                   size_t len);
/* One operation; offset must be sector-aligned. */
sim_flash_result_t sim_flash_erase_sector(sim_flash_t *flash, uint32_t offset_bytes);
/* One operation per sector, low to high; stops at the first failure. */
sim_flash_result_t sim_flash_erase_range(sim_flash_t *flash, uint32_t offset_bytes,
                                         uint32_t len_bytes);

/* Counters: operations so far (erases + writes + counted ops). */
uint64_t sim_flash_op_count(const sim_flash_t *flash);
uint64_t sim_flash_erase_count(const sim_flash_t *flash);
uint64_t sim_flash_write_count(const sim_flash_t *flash);
uint64_t sim_flash_other_op_count(const sim_flash_t *flash);

/* Continues the counters of an earlier run on the same chip (a reset that re-executes the
 * board keeps counting where the last boot stopped). */
void sim_flash_restore_counters(sim_flash_t *flash, uint64_t ops, uint64_t erases, uint64_t writes,
                                uint64_t others);

/* Operations first_op … first_op + count − 1 fail (0 count: none). */
void sim_flash_set_fail_ops(sim_flash_t *flash, uint64_t first_op, uint64_t count);
/* Cut power at operation op_number (1-based; 0 disables). */
void sim_flash_set_power_cut(sim_flash_t *flash, uint64_t op_number, sim_flash_cut_mode_t mode);
/* One line per operation ("flash op 12: erase 0x00d000 len 4096") to trace, NULL for none. */
void sim_flash_set_trace(sim_flash_t *flash, FILE *trace);

/* The flash that sim_flash_count_op() counts on (set by sim_device_init). */
void sim_flash_set_default(sim_flash_t *flash);
sim_flash_t *sim_flash_get_default(void);
/* Counts an operation that is not an erase/write of this flash (e.g. "kv_set"),
 * with the same fault injection and power cut. Returns SIM_FLASH_OK when the
 * caller may perform it, SIM_FLASH_ERR_INJECTED when it must fail. With no
 * default flash it returns SIM_FLASH_OK and counts nothing. On a power cut
 * (either mode) the caller's operation is never performed. */
sim_flash_result_t sim_flash_count_op(const char *what);

const char *sim_flash_result_str(sim_flash_result_t result);

#ifdef __cplusplus
}
#endif
