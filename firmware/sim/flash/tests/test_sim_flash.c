/* test_sim_flash.c — the NOR flash model itself (fakes need tests). */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim_flash.h"

static char s_path[64];

static sim_flash_t *new_flash(void) {
    snprintf(s_path, sizeof(s_path), "/tmp/simflash-unit-%ld.bin", (long)getpid());
    sim_flash_t *flash = NULL;
    assert_int_equal(sim_flash_create(s_path, 4u << 20, &flash), SIM_FLASH_OK);
    return flash;
}

static void free_flash(sim_flash_t *flash) {
    sim_flash_close(flash);
    unlink(s_path);
}

static void test_created_chip_is_erased(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    assert_int_equal(sim_flash_size_bytes(flash), 4u << 20);
    uint8_t buf[4096];
    for (uint32_t offset = 0; offset < (4u << 20); offset += 0x40000) {
        assert_int_equal(sim_flash_read(flash, offset, buf, sizeof(buf)), SIM_FLASH_OK);
        for (size_t i = 0; i < sizeof(buf); i++) {
            assert_int_equal(buf[i], 0xFF);
        }
    }
    assert_int_equal(sim_flash_op_count(flash), 0);
    free_flash(flash);
}

static void test_open_refuses_other_sizes(void **state) {
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/simflash-odd-%ld.bin", (long)getpid());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("not a flash chip", f);
    fclose(f);
    sim_flash_t *flash = NULL;
    assert_int_equal(sim_flash_open(path, &flash), SIM_FLASH_ERR_ARG);
    assert_null(flash);
    assert_int_equal(sim_flash_create(path, 3u << 20, &flash), SIM_FLASH_ERR_ARG);
    unlink(path);
    assert_int_equal(sim_flash_open("/nonexistent/flash.bin", &flash), SIM_FLASH_ERR_IO);
}

static void test_unaligned_write_refused(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(sim_flash_write(flash, 0x1001, data, 4), SIM_FLASH_ERR_ALIGN);
    assert_int_equal(sim_flash_write(flash, 0x1000, data, 3), SIM_FLASH_ERR_ALIGN);
    assert_int_equal(sim_flash_write(flash, 0x1002, data, 6), SIM_FLASH_ERR_ALIGN);
    uint8_t back[8];
    assert_int_equal(sim_flash_read(flash, 0x1000, back, sizeof(back)), SIM_FLASH_OK);
    for (size_t i = 0; i < sizeof(back); i++) {
        assert_int_equal(back[i], 0xFF);
    }
    assert_int_equal(sim_flash_op_count(flash), 0);
    free_flash(flash);
}

static void test_write_only_clears_bits(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t first[4] = {0xF0, 0x0F, 0xAA, 0x00};
    assert_int_equal(sim_flash_write(flash, 0x2000, first, 4), SIM_FLASH_OK);
    /* Same bytes again: allowed (no bit goes 0 -> 1). */
    assert_int_equal(sim_flash_write(flash, 0x2000, first, 4), SIM_FLASH_OK);
    /* Clearing more bits: allowed. */
    uint8_t more[4] = {0x30, 0x0F, 0x0A, 0x00};
    assert_int_equal(sim_flash_write(flash, 0x2000, more, 4), SIM_FLASH_OK);
    /* A 0 -> 1 bit anywhere: refused, nothing changes. */
    uint8_t up[4] = {0x30, 0x0F, 0x0A, 0x01};
    uint64_t ops = sim_flash_op_count(flash);
    assert_int_equal(sim_flash_write(flash, 0x2000, up, 4), SIM_FLASH_ERR_NOT_ERASED);
    assert_int_equal(sim_flash_op_count(flash), ops);
    uint8_t back[4];
    assert_int_equal(sim_flash_read(flash, 0x2000, back, 4), SIM_FLASH_OK);
    assert_memory_equal(back, more, 4);
    free_flash(flash);
}

static void test_erase_restores_ff_in_one_sector(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t zeros[8192];
    memset(zeros, 0, sizeof(zeros));
    assert_int_equal(sim_flash_write(flash, 0x3000, zeros, sizeof(zeros)), SIM_FLASH_OK);
    assert_int_equal(sim_flash_erase_sector(flash, 0x3000), SIM_FLASH_OK);
    uint8_t back[8192];
    assert_int_equal(sim_flash_read(flash, 0x3000, back, sizeof(back)), SIM_FLASH_OK);
    for (size_t i = 0; i < 4096; i++) {
        assert_int_equal(back[i], 0xFF);
    }
    for (size_t i = 4096; i < 8192; i++) {
        assert_int_equal(back[i], 0x00); /* the next sector is untouched */
    }
    assert_int_equal(sim_flash_erase_sector(flash, 0x3004), SIM_FLASH_ERR_ALIGN);
    assert_int_equal(sim_flash_erase_range(flash, 0x3000, 100), SIM_FLASH_ERR_ALIGN);
    free_flash(flash);
}

static void test_out_of_range_refused(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t buf[8] = {0};
    uint32_t end = sim_flash_size_bytes(flash);
    assert_int_equal(sim_flash_write(flash, end - 4, buf, 8), SIM_FLASH_ERR_RANGE);
    assert_int_equal(sim_flash_read(flash, end - 4, buf, 8), SIM_FLASH_ERR_RANGE);
    assert_int_equal(sim_flash_erase_sector(flash, end), SIM_FLASH_ERR_RANGE);
    assert_int_equal(sim_flash_erase_range(flash, end - 4096, 8192), SIM_FLASH_ERR_RANGE);
    assert_int_equal(sim_flash_read(flash, end - 8, buf, 8), SIM_FLASH_OK);
    free_flash(flash);
}

static void test_operation_counter(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t word[4] = {0};
    assert_int_equal(sim_flash_erase_range(flash, 0x10000, 3 * 4096), SIM_FLASH_OK);
    assert_int_equal(sim_flash_write(flash, 0x10000, word, 4), SIM_FLASH_OK);
    assert_int_equal(sim_flash_write(flash, 0x10000, word, 0), SIM_FLASH_OK); /* empty: not an op */
    uint8_t buf[16];
    assert_int_equal(sim_flash_read(flash, 0x10000, buf, sizeof(buf)),
                     SIM_FLASH_OK); /* reads: not ops */
    assert_int_equal(sim_flash_erase_count(flash), 3);
    assert_int_equal(sim_flash_write_count(flash), 1);
    assert_int_equal(sim_flash_op_count(flash), 4);
    sim_flash_set_default(flash);
    assert_int_equal(sim_flash_count_op("kv_set"), SIM_FLASH_OK);
    assert_int_equal(sim_flash_other_op_count(flash), 1);
    assert_int_equal(sim_flash_op_count(flash), 5);
    sim_flash_set_default(NULL);
    assert_int_equal(sim_flash_count_op("kv_set"),
                     SIM_FLASH_OK); /* no default flash: not counted */
    assert_int_equal(sim_flash_op_count(flash), 5);
    free_flash(flash);
}

static void test_injected_failures(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t word[4] = {0x12, 0x34, 0x56, 0x78};
    sim_flash_set_fail_ops(flash, 2, 2);                                  /* ops 2 and 3 fail */
    assert_int_equal(sim_flash_write(flash, 0x0, word, 4), SIM_FLASH_OK); /* op 1 */
    assert_int_equal(sim_flash_write(flash, 0x4, word, 4), SIM_FLASH_ERR_INJECTED); /* op 2 */
    assert_int_equal(sim_flash_erase_sector(flash, 0x0), SIM_FLASH_ERR_INJECTED);   /* op 3 */
    sim_flash_set_default(flash);
    assert_int_equal(sim_flash_count_op("kv_set"), SIM_FLASH_OK); /* op 4 */
    uint8_t back[8];
    assert_int_equal(sim_flash_read(flash, 0x0, back, 8), SIM_FLASH_OK);
    assert_memory_equal(back, word, 4); /* op 1 happened, the failed erase did not undo it */
    for (int i = 4; i < 8; i++) {
        assert_int_equal(back[i], 0xFF); /* the failed write changed nothing */
    }
    sim_flash_set_fail_ops(flash, 5, 1);
    assert_int_equal(sim_flash_count_op("kv_set"), SIM_FLASH_ERR_INJECTED); /* op 5 */
    assert_int_equal(sim_flash_op_count(flash), 5);
    sim_flash_set_default(NULL);
    free_flash(flash);
}

static void test_persists_across_reopen(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(sim_flash_write(flash, 0x8000, data, 8), SIM_FLASH_OK);
    sim_flash_close(flash);
    assert_int_equal(sim_flash_open(s_path, &flash), SIM_FLASH_OK);
    uint8_t back[8];
    assert_int_equal(sim_flash_read(flash, 0x8000, back, 8), SIM_FLASH_OK);
    assert_memory_equal(back, data, 8);
    free_flash(flash);
}

/* Runs `body` in a forked child with a power cut at op 2 and returns its exit status;
 * the child's stdout goes to out_path. */
typedef void (*cut_body_t)(sim_flash_t *flash);

static int run_cut_child(cut_body_t body, sim_flash_cut_mode_t mode, const char *out_path) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen(out_path, "w", stdout) == NULL) {
            _exit(99);
        }
        sim_flash_t *flash = NULL;
        if (sim_flash_open(s_path, &flash) != SIM_FLASH_OK) {
            _exit(98);
        }
        sim_flash_set_power_cut(flash, 2, mode);
        body(flash);
        _exit(0); /* not reached when the cut fires */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void two_writes(sim_flash_t *flash) {
    uint8_t first[4] = {0x11, 0x11, 0x11, 0x11};
    uint8_t second[16];
    memset(second, 0x22, sizeof(second));
    sim_flash_write(flash, 0x5000, first, sizeof(first));
    sim_flash_write(flash, 0x6000, second, sizeof(second)); /* op 2: cut */
    uint8_t third[4] = {0x33, 0x33, 0x33, 0x33};
    sim_flash_write(flash, 0x7000, third, sizeof(third));
}

static void write_then_erase(sim_flash_t *flash) {
    uint8_t zeros[4096];
    memset(zeros, 0, sizeof(zeros));
    sim_flash_write(flash, 0x9000, zeros, sizeof(zeros));
    sim_flash_erase_sector(flash, 0x9000); /* op 2: cut */
}

static bool file_contains(const char *path, const char *text) {
    char buf[512] = {0};
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

static void test_power_cut_torn_write(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    char out[80];
    snprintf(out, sizeof(out), "/tmp/simflash-cut-%ld.txt", (long)getpid());
    assert_int_equal(run_cut_child(two_writes, SIM_FLASH_CUT_TORN, out),
                     SIM_FLASH_POWER_CUT_EXIT_CODE);
    assert_true(file_contains(out, "POWER CUT at flash op 2 (write 0x006000 len 16)"));
    unlink(out);
    uint8_t back[16];
    assert_int_equal(sim_flash_read(flash, 0x5000, back, 4), SIM_FLASH_OK);
    assert_int_equal(back[0], 0x11); /* op 1 completed */
    assert_int_equal(sim_flash_read(flash, 0x6000, back, 16), SIM_FLASH_OK);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(back[i], 0x22); /* first half of the cut write */
    }
    for (int i = 8; i < 16; i++) {
        assert_int_equal(back[i], 0xFF); /* second half never programmed */
    }
    assert_int_equal(sim_flash_read(flash, 0x7000, back, 4), SIM_FLASH_OK);
    assert_int_equal(back[0], 0xFF); /* nothing after the cut */
    free_flash(flash);
}

static void test_power_cut_before_write(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    char out[80];
    snprintf(out, sizeof(out), "/tmp/simflash-cut-%ld.txt", (long)getpid());
    assert_int_equal(run_cut_child(two_writes, SIM_FLASH_CUT_BEFORE, out),
                     SIM_FLASH_POWER_CUT_EXIT_CODE);
    unlink(out);
    uint8_t back[16];
    assert_int_equal(sim_flash_read(flash, 0x6000, back, 16), SIM_FLASH_OK);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(back[i], 0xFF);
    }
    free_flash(flash);
}

static void test_power_cut_torn_erase(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    char out[80];
    snprintf(out, sizeof(out), "/tmp/simflash-cut-%ld.txt", (long)getpid());
    assert_int_equal(run_cut_child(write_then_erase, SIM_FLASH_CUT_TORN, out),
                     SIM_FLASH_POWER_CUT_EXIT_CODE);
    assert_true(file_contains(out, "POWER CUT at flash op 2 (erase 0x009000 len 4096)"));
    unlink(out);
    uint8_t back[4096];
    assert_int_equal(sim_flash_read(flash, 0x9000, back, sizeof(back)), SIM_FLASH_OK);
    for (int i = 0; i < 2048; i++) {
        assert_int_equal(back[i], 0xFF);
    }
    for (int i = 2048; i < 4096; i++) {
        assert_int_equal(back[i], 0x00);
    }
    free_flash(flash);
}

static void counted_kv(sim_flash_t *flash) {
    sim_flash_set_default(flash);
    sim_flash_count_op("kv_set");
    sim_flash_count_op("kv_set"); /* op 2: cut */
    _exit(0);
}

static void test_power_cut_on_counted_op(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    char out[80];
    snprintf(out, sizeof(out), "/tmp/simflash-cut-%ld.txt", (long)getpid());
    assert_int_equal(run_cut_child(counted_kv, SIM_FLASH_CUT_TORN, out),
                     SIM_FLASH_POWER_CUT_EXIT_CODE);
    assert_true(file_contains(out, "POWER CUT at flash op 2 (kv_set"));
    unlink(out);
    free_flash(flash);
}

static void test_trace_lines(void **state) {
    (void)state;
    sim_flash_t *flash = new_flash();
    char path[80];
    snprintf(path, sizeof(path), "/tmp/simflash-trace-%ld.txt", (long)getpid());
    FILE *trace = fopen(path, "w");
    assert_non_null(trace);
    sim_flash_set_trace(flash, trace);
    uint8_t word[4] = {0};
    sim_flash_set_fail_ops(flash, 2, 1);
    assert_int_equal(sim_flash_erase_sector(flash, 0x1000), SIM_FLASH_OK);
    assert_int_equal(sim_flash_write(flash, 0x1000, word, 4), SIM_FLASH_ERR_INJECTED);
    fclose(trace);
    sim_flash_set_trace(flash, NULL);
    assert_true(file_contains(path, "flash op 1: erase 0x001000 len 4096\n"));
    assert_true(file_contains(path, "flash op 2: write 0x001000 len 4 [injected failure]\n"));
    unlink(path);
    free_flash(flash);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_created_chip_is_erased),
        cmocka_unit_test(test_open_refuses_other_sizes),
        cmocka_unit_test(test_unaligned_write_refused),
        cmocka_unit_test(test_write_only_clears_bits),
        cmocka_unit_test(test_erase_restores_ff_in_one_sector),
        cmocka_unit_test(test_out_of_range_refused),
        cmocka_unit_test(test_operation_counter),
        cmocka_unit_test(test_injected_failures),
        cmocka_unit_test(test_persists_across_reopen),
        cmocka_unit_test(test_power_cut_torn_write),
        cmocka_unit_test(test_power_cut_before_write),
        cmocka_unit_test(test_power_cut_torn_erase),
        cmocka_unit_test(test_power_cut_on_counted_op),
        cmocka_unit_test(test_trace_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
