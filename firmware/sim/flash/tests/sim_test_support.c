/* sim_test_support.c — helpers shared by the sim_flash cmocka tests. */
#define _POSIX_C_SOURCE 200809L

#include "sim_test_support.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim_digest.h"

#ifndef FIXTURE_DIR
#error "FIXTURE_DIR must name the directory make_fixtures.py wrote"
#endif

void t_build_table(const t_part_t *parts, int count, bool with_md5,
                   uint8_t out[SIM_PARTITION_TABLE_MAX_LEN_BYTES]) {
    memset(out, 0xFF, SIM_PARTITION_TABLE_MAX_LEN_BYTES);
    for (int i = 0; i < count; i++) {
        uint8_t *e = out + i * SIM_PARTITION_ENTRY_SIZE_BYTES;
        e[0] = 0xAA;
        e[1] = 0x50;
        e[2] = parts[i].type;
        e[3] = parts[i].subtype;
        for (int b = 0; b < 4; b++) {
            e[4 + b] = (uint8_t)(parts[i].offset >> (8 * b));
            e[8 + b] = (uint8_t)(parts[i].size >> (8 * b));
        }
        memset(e + 12, 0, 16);
        strncpy((char *)e + 12, parts[i].label, 16);
        memset(e + 28, 0, 4);
    }
    if (with_md5) {
        uint8_t *e = out + count * SIM_PARTITION_ENTRY_SIZE_BYTES;
        memset(e, 0xFF, SIM_PARTITION_ENTRY_SIZE_BYTES);
        e[0] = 0xEB;
        e[1] = 0xEB;
        sim_md5_t md5;
        sim_md5_init(&md5);
        sim_md5_update(&md5, out, (size_t)count * SIM_PARTITION_ENTRY_SIZE_BYTES);
        sim_md5_finish(&md5, e + SIM_PARTITION_MD5_OFFSET_BYTES);
    }
}

uint8_t *t_fixture(const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("fixture %s missing (run make_fixtures.py)", path);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size + 4);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return data;
}

static char s_paths[64][64];
static sim_flash_t *s_flashes[64];

sim_flash_t *t_flash_new(const uint8_t *table) {
    int slot = 0;
    while (slot < 64 && s_flashes[slot] != NULL) {
        slot++;
    }
    assert_true(slot < 64);
    snprintf(s_paths[slot], sizeof(s_paths[slot]), "/tmp/simflash-test-%ld-%d.bin", (long)getpid(),
             slot);
    sim_flash_t *flash = NULL;
    assert_int_equal(sim_flash_create(s_paths[slot], 4u << 20, &flash), SIM_FLASH_OK);
    s_flashes[slot] = flash;
    if (table != NULL) {
        assert_int_equal(sim_flash_write(flash, SIM_PARTITION_TABLE_OFFSET, table,
                                         SIM_PARTITION_TABLE_MAX_LEN_BYTES),
                         SIM_FLASH_OK);
    } else {
        size_t len = 0;
        uint8_t *fixture = t_fixture("partitions_4MB.bin", &len);
        assert_int_equal(len, SIM_PARTITION_TABLE_MAX_LEN_BYTES);
        assert_int_equal(sim_flash_write(flash, SIM_PARTITION_TABLE_OFFSET, fixture, len),
                         SIM_FLASH_OK);
        free(fixture);
    }
    return flash;
}

void t_put_image(sim_flash_t *flash, uint32_t offset, const char *fixture) {
    size_t len = 0;
    uint8_t *image = t_fixture(fixture, &len);
    while (len % 4 != 0) {
        image[len++] = 0xFF;
    }
    assert_int_equal(sim_flash_write(flash, offset, image, len), SIM_FLASH_OK);
    free(image);
}

void t_put_otadata(sim_flash_t *flash, uint32_t otadata_offset, int index,
                   const sim_otadata_entry_t *entry) {
    sim_partition_t otadata = {.offset_bytes = otadata_offset, .size_bytes = 0x2000};
    assert_int_equal(sim_otadata_write(flash, &otadata, index, entry), SIM_FLASH_OK);
}

void t_get_otadata(sim_flash_t *flash, uint32_t otadata_offset, sim_otadata_entry_t entries[2]) {
    sim_partition_t otadata = {.offset_bytes = otadata_offset, .size_bytes = 0x2000};
    assert_int_equal(sim_otadata_read(flash, &otadata, entries), SIM_FLASH_OK);
}

void t_flip_bit(sim_flash_t *flash, uint32_t offset) {
    for (int slot = 0; slot < 64; slot++) {
        if (s_flashes[slot] == flash) {
            FILE *f = fopen(s_paths[slot], "r+b");
            assert_non_null(f);
            fseek(f, offset, SEEK_SET);
            int byte = fgetc(f);
            fseek(f, offset, SEEK_SET);
            fputc(byte ^ 0x01, f);
            fclose(f);
            return;
        }
    }
    fail_msg("unknown flash");
}

void t_flash_free(sim_flash_t *flash) {
    for (int slot = 0; slot < 64; slot++) {
        if (s_flashes[slot] == flash) {
            sim_flash_close(flash);
            unlink(s_paths[slot]);
            s_flashes[slot] = NULL;
            return;
        }
    }
}

/* ---------------------------------------------------------------- log capture */

static char s_log[32768];
static size_t s_log_len;

static void capture_log(ota_log_level_t level, const char *tag, const char *fmt, va_list args) {
    static const char LETTERS[] = "?EWID";
    char line[512];
    int n = snprintf(line, sizeof(line), "%c %s: ", LETTERS[level <= 4 ? level : 0], tag);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, args);
    size_t len = strlen(line);
    if (s_log_len + len + 2 < sizeof(s_log)) {
        memcpy(s_log + s_log_len, line, len);
        s_log_len += len;
        s_log[s_log_len++] = '\n';
        s_log[s_log_len] = '\0';
    }
    if (getenv("SIM_TEST_VERBOSE") != NULL) {
        printf("%s\n", line);
    }
}

void t_log_clear(void) {
    s_log_len = 0;
    s_log[0] = '\0';
}

bool t_log_contains(const char *text) {
    return strstr(s_log, text) != NULL;
}

void t_device_init(sim_flash_t *flash, bool rollback_enabled) {
    sim_device_config_t config = sim_device_default_config();
    config.rollback_enabled = rollback_enabled;
    config.log = capture_log;
    sim_device_init(flash, &config);
    t_log_clear();
}

/* ---------------------------------------------------------------- reboot double */

jmp_buf t_reboot_jump;
bool t_reboot_armed;
int t_reboot_count;

void esp_restart(void) {
    t_reboot_count++;
    if (t_reboot_armed) {
        t_reboot_armed = false;
        longjmp(t_reboot_jump, 1);
    }
}

int t_boot(sim_boot_result_t *result) {
    sim_boot_result_t local;
    sim_boot_result_t *out = result != NULL ? result : &local;
    sim_boot_status_t status = sim_bootloader_boot(out);
    if (status != SIM_BOOT_OK) {
        fail_msg("boot failed: %s", sim_boot_status_str(status));
    }
    return out->slot;
}
