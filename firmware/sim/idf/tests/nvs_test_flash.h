/* nvs_test_flash.h — the NVS engine's tests on a real flash model file: an nvs_io_t over a
 * region of a sim_flash chip (NOR rules, counted operations, power cuts). */
#pragma once

#include <stdint.h>

#include "nvs_item.h"
#include "nvs_storage.h"
#include "sim_flash.h"

#define NVS_TEST_BASE 0x9000u

typedef struct {
    sim_flash_t *flash;
    uint32_t base;
    nvs_io_t io;
} nvs_test_flash_t;

/* Creates (erased) or opens the chip at path; the NVS region starts at NVS_TEST_BASE. */
void nvs_test_flash_open(nvs_test_flash_t *f, const char *path, bool create);
void nvs_test_flash_close(nvs_test_flash_t *f);
/* A fresh path under $TMPDIR for this test binary. */
void nvs_test_flash_path(char *out, size_t cap, const char *name);

/* One test's NVS: its flash file, the chip over it and the storage engine on `pages` pages. */
typedef struct {
    char path[512];
    nvs_test_flash_t flash;
    nvs_storage_t st;
    uint32_t pages;
} nvs_test_fixture_t;
