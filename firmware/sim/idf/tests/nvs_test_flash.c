/* nvs_test_flash.c — nvs_io_t over a region of a file-backed sim_flash chip. */
#include "nvs_test_flash.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "nvs.h"

static esp_err_t nvs_test_err(sim_flash_result_t r) {
    return r == SIM_FLASH_OK ? ESP_OK : NVS_ERR_FLASH_OP_FAIL;
}

static esp_err_t nvs_test_read(void *ctx, uint32_t offset, void *buf, size_t len) {
    nvs_test_flash_t *f = ctx;
    return nvs_test_err(sim_flash_read(f->flash, f->base + offset, buf, len));
}

static esp_err_t nvs_test_write(void *ctx, uint32_t offset, const void *buf, size_t len) {
    nvs_test_flash_t *f = ctx;
    return nvs_test_err(sim_flash_write(f->flash, f->base + offset, buf, len));
}

static esp_err_t nvs_test_erase(void *ctx, uint32_t offset, size_t len) {
    nvs_test_flash_t *f = ctx;
    return nvs_test_err(sim_flash_erase_range(f->flash, f->base + offset, (uint32_t)len));
}

void nvs_test_flash_open(nvs_test_flash_t *f, const char *path, bool create) {
    sim_flash_result_t r = create ? sim_flash_create(path, 4u * 1024u * 1024u, &f->flash)
                                  : sim_flash_open(path, &f->flash);
    if (r != SIM_FLASH_OK) {
        fprintf(stderr, "cannot open flash %s: %s\n", path, sim_flash_result_str(r));
        abort();
    }
    f->base = NVS_TEST_BASE;
    f->io.ctx = f;
    f->io.read = nvs_test_read;
    f->io.write = nvs_test_write;
    f->io.erase = nvs_test_erase;
    f->io.crypt = NULL;
}

void nvs_test_flash_close(nvs_test_flash_t *f) {
    sim_flash_close(f->flash);
    f->flash = NULL;
}

void nvs_test_flash_path(char *out, size_t cap, const char *name) {
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/%s-%ld.bin", tmp != NULL ? tmp : "/tmp", name, (long)getpid());
}
