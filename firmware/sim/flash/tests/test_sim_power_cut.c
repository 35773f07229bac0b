/*
 * test_sim_power_cut.c — a v1 → v2 update through the esp_ota_ops emulation with
 * the power cut at every one of its flash operations (both cut modes), each in a
 * forked child. After every cut the bootloader model must boot a valid image
 * (v1 or v2), and the update must then complete when run again.
 */
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

#include "ota_port.h"
#include "sim_image.h"
#include "sim_test_support.h"

#define CHUNK_BYTES 4096u
#define MAX_CUT_POINTS 400u

static uint8_t *s_v2;
static size_t s_v2_len;

/* The whole update as the OTA core drives it; returns 0 or the step that failed. */
static int run_update(void) {
    sim_ota_update_t *update = NULL;
    if (sim_ota_update_begin(1, (uint32_t)s_v2_len, &update) != OTA_OK) {
        return 1;
    }
    for (size_t done = 0; done < s_v2_len; done += CHUNK_BYTES) {
        size_t n = s_v2_len - done < CHUNK_BYTES ? s_v2_len - done : CHUNK_BYTES;
        if (sim_ota_update_write(update, s_v2 + done, n) != OTA_OK) {
            sim_ota_update_abort(update);
            return 2;
        }
    }
    if (sim_ota_update_end(update) != OTA_OK) {
        return 3;
    }
    if (sim_ota_set_boot_slot(1) != OTA_OK) {
        return 4;
    }
    sim_boot_result_t boot;
    if (sim_bootloader_boot(&boot) != SIM_BOOT_OK || boot.slot != 1) {
        return 5;
    }
    ota_img_state_t state;
    if (sim_ota_running_slot() != sim_ota_boot_slot() || sim_ota_slot_state(1, &state) != OTA_OK ||
        state != OTA_IMG_PENDING_VERIFY) {
        return 6;
    }
    if (sim_ota_mark_valid() != OTA_OK) {
        return 7;
    }
    return 0;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    static uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    fclose(in);
    fclose(out);
}

static void test_power_cut_at_every_operation(void **state) {
    (void)state;
    s_v2 = t_fixture("app_v2.bin", &s_v2_len);
    char base[64], work[64];
    snprintf(base, sizeof(base), "/tmp/simflash-cut-base-%ld.bin", (long)getpid());
    snprintf(work, sizeof(work), "/tmp/simflash-cut-work-%ld.bin", (long)getpid());

    /* Base: v1 in ota_0, booted once (otadata seq 1 VALID). */
    sim_flash_t *flash = NULL;
    assert_int_equal(sim_flash_create(base, 4u << 20, &flash), SIM_FLASH_OK);
    size_t len = 0;
    uint8_t *table = t_fixture("partitions_4MB.bin", &len);
    assert_int_equal(sim_flash_write(flash, SIM_PARTITION_TABLE_OFFSET, table, len), SIM_FLASH_OK);
    free(table);
    t_put_image(flash, T_OTA0_OFFSET, "app_v1.bin");
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0);
    sim_flash_close(flash);

    /* How many operations a whole update takes. */
    copy_file(base, work);
    assert_int_equal(sim_flash_open(work, &flash), SIM_FLASH_OK);
    t_device_init(flash, true);
    assert_int_equal(t_boot(NULL), 0);
    assert_int_equal(run_update(), 0);
    uint64_t total_ops = sim_flash_op_count(flash);
    sim_flash_close(flash);
    assert_true(total_ops > 20 && total_ops < MAX_CUT_POINTS);

    int booted_v1 = 0, booted_v2 = 0;
    for (int mode = 0; mode < 2; mode++) {
        for (uint64_t cut = 1; cut <= total_ops; cut++) {
            copy_file(base, work);
            fflush(NULL);
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                if (freopen("/dev/null", "w", stdout) == NULL) {
                    _exit(98);
                }
                sim_flash_t *child_flash = NULL;
                if (sim_flash_open(work, &child_flash) != SIM_FLASH_OK) {
                    _exit(97);
                }
                sim_flash_set_power_cut(child_flash, cut,
                                        mode == 0 ? SIM_FLASH_CUT_TORN : SIM_FLASH_CUT_BEFORE);
                t_device_init(child_flash, true);
                if (sim_bootloader_boot(NULL) != SIM_BOOT_OK) {
                    _exit(96);
                }
                int failed_step = run_update();
                _exit(failed_step == 0 ? 0 : 90 + failed_step);
            }
            int status = 0;
            assert_int_equal(waitpid(pid, &status, 0), pid);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != SIM_FLASH_POWER_CUT_EXIT_CODE) {
                fail_msg("mode %d cut %llu: child status %d, expected the power cut", mode,
                         (unsigned long long)cut, status);
            }
            /* Power on again: a valid image must boot, and the update must then go through. */
            assert_int_equal(sim_flash_open(work, &flash), SIM_FLASH_OK);
            t_device_init(flash, true);
            sim_boot_result_t boot;
            if (sim_bootloader_boot(&boot) != SIM_BOOT_OK) {
                fail_msg("mode %d cut %llu: no bootable app after the cut", mode,
                         (unsigned long long)cut);
            }
            assert_int_equal(sim_image_verify(flash, boot.partition.offset_bytes,
                                              boot.partition.size_bytes, 0, NULL, NULL, 0),
                             SIM_IMAGE_OK);
            if (boot.slot == 0) {
                booted_v1++;
                assert_string_equal(boot.image.app_desc.version, "1.0.0");
                int failed_step = run_update();
                if (failed_step != 0) {
                    fail_msg("mode %d cut %llu: retried update failed at step %d", mode,
                             (unsigned long long)cut, failed_step);
                }
            } else {
                booted_v2++;
                assert_int_equal(boot.slot, 1);
                assert_string_equal(boot.image.app_desc.version, "2.0.0");
                /* Cut after the confirm's erase or during it: confirm again under the client's
                 * rule. */
                ota_img_state_t img_state;
                if (sim_ota_slot_state(1, &img_state) == OTA_OK &&
                    img_state == OTA_IMG_PENDING_VERIFY && sim_ota_boot_slot() == 1) {
                    assert_int_equal(sim_ota_mark_valid(), OTA_OK);
                }
            }
            assert_int_equal(t_boot(&boot), 1);
            ota_img_state_t final_state;
            assert_int_equal(sim_ota_slot_state(1, &final_state), OTA_OK);
            assert_int_equal(final_state, OTA_IMG_VALID);
            sim_flash_close(flash);
        }
    }
    printf("power cut: %llu operations per update, 2 modes: %d cuts came back on v1, %d on v2\n",
           (unsigned long long)total_ops, booted_v1, booted_v2);
    assert_true(booted_v1 > 0 && booted_v2 > 0);
    unlink(base);
    unlink(work);
    free(s_v2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_cut_at_every_operation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
