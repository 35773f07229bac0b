/*
 * test_sim_random.c — thousands of random otadata states (seeded, reproducible)
 * against invariants of the bootloader model and the esp_ota_ops emulation.
 *
 *   SIM_RANDOM_SEED=<u64>     another seed (default 20261128)
 *   SIM_RANDOM_STATES=<n>     how many states (default 2000)
 * A failure prints the seed and the state number, so it can be replayed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ota_port.h"
#include "sim_image.h"
#include "sim_test_support.h"

static uint64_t s_rng;

static uint32_t rnd(void) {
    /* xorshift64* */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return (uint32_t)((s_rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static uint32_t pick(const uint32_t *values, size_t n) {
    return values[rnd() % n];
}

static sim_otadata_entry_t random_entry(void) {
    sim_otadata_entry_t entry;
    memset(&entry, 0xFF, sizeof(entry));
    if (rnd() % 7 == 0) {
        return entry; /* erased */
    }
    static const uint32_t SEQS[] = {0, 1,   2,          3,          4,          5,         6,
                                    7, 100, 0x7FFFFFFF, 0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF};
    static const uint32_t STATES[] = {SIM_OTA_STATE_NEW,
                                      SIM_OTA_STATE_PENDING_VERIFY,
                                      SIM_OTA_STATE_VALID,
                                      SIM_OTA_STATE_INVALID,
                                      SIM_OTA_STATE_ABORTED,
                                      SIM_OTA_STATE_UNDEFINED,
                                      0x77};
    entry.ota_seq = rnd() % 9 == 0 ? rnd() : pick(SEQS, sizeof(SEQS) / sizeof(SEQS[0]));
    entry.ota_state = pick(STATES, sizeof(STATES) / sizeof(STATES[0]));
    entry.crc = sim_otadata_crc(&entry);
    if (rnd() % 6 == 0) {
        entry.crc ^= 1u << (rnd() % 32);
    }
    return entry;
}

/* Four flash files: slot images good/good, good/broken, broken/good, broken/erased. */
enum { LAYOUTS = 4 };
static sim_flash_t *s_layouts[LAYOUTS];
static bool s_slot_good[LAYOUTS][2] = {{true, true}, {true, false}, {false, true}, {false, false}};

static int setup_layouts(void **state) {
    (void)state;
    for (int i = 0; i < LAYOUTS; i++) {
        s_layouts[i] = t_flash_new(NULL);
        t_put_image(s_layouts[i], T_OTA0_OFFSET, "app_v1.bin");
        if (i != 3) {
            t_put_image(s_layouts[i], T_OTA1_OFFSET, "app_v2.bin");
        }
        if (!s_slot_good[i][0]) {
            t_flip_bit(s_layouts[i], T_OTA0_OFFSET + 40000);
        }
        if (i == 1) {
            t_flip_bit(s_layouts[i], T_OTA1_OFFSET + 40000);
        }
    }
    return 0;
}

static int teardown_layouts(void **state) {
    (void)state;
    for (int i = 0; i < LAYOUTS; i++) {
        t_flash_free(s_layouts[i]);
    }
    return 0;
}

static bool slot_image_ok(sim_flash_t *flash, int slot) {
    uint32_t offset = slot == 0 ? T_OTA0_OFFSET : T_OTA1_OFFSET;
    return sim_image_verify(flash, offset, T_SLOT_SIZE, 0, NULL, NULL, 0) == SIM_IMAGE_OK;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fail_msg("seed %llu state %d: %s (line %d)", (unsigned long long)seed, n, #cond,       \
                     __LINE__);                                                                    \
        }                                                                                          \
    } while (0)

static void test_random_otadata_states(void **state) {
    (void)state;
    const char *seed_env = getenv("SIM_RANDOM_SEED");
    const char *count_env = getenv("SIM_RANDOM_STATES");
    const uint64_t seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) : 20261128u;
    const int count = count_env != NULL ? atoi(count_env) : 2000;
    s_rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    int fallbacks = 0, traps = 0, confirms = 0, switches = 0, wraps = 0, no_boot = 0;

    for (int n = 0; n < count; n++) {
        int layout = (int)(rnd() % LAYOUTS);
        sim_flash_t *flash = s_layouts[layout];
        bool rollback = rnd() % 4 != 0;
        sim_otadata_entry_t before[2] = {random_entry(), random_entry()};
        t_put_otadata(flash, T_OTADATA_OFFSET, 0, &before[0]);
        t_put_otadata(flash, T_OTADATA_OFFSET, 1, &before[1]);
        t_device_init(flash, rollback);

        sim_otadata_entry_t predicted[2] = {before[0], before[1]};
        sim_boot_selection_t sel = sim_bootloader_select(predicted, 2, false, rollback);
        sim_boot_result_t boot;
        sim_boot_status_t status = sim_bootloader_boot(&boot);
        bool any_good = s_slot_good[layout][0] || s_slot_good[layout][1];

        /* The boot succeeds exactly when some slot holds a valid image, and never runs a bad one.
         */
        CHECK((status == SIM_BOOT_OK) == any_good);
        if (status != SIM_BOOT_OK) {
            no_boot++;
            CHECK(sim_ota_running_slot() == OTA_SLOT_NONE);
            continue;
        }
        CHECK(boot.slot == 0 || boot.slot == 1);
        CHECK(slot_image_ok(flash, boot.slot));
        CHECK(boot.selected_index ==
              (sel.start_index < 0 ? SIM_BOOT_INDEX_FACTORY : sel.start_index));
        /* No fallback when the selected slot is good; fallback otherwise. */
        if (sel.start_index >= 0 && s_slot_good[layout][sel.start_index]) {
            CHECK(boot.slot == sel.start_index && !boot.fell_back);
        } else {
            CHECK(boot.fell_back);
            fallbacks++;
        }

        /* Flash after boot = the predicted states, plus the initial entry when one was due. */
        sim_otadata_entry_t after[2];
        t_get_otadata(flash, T_OTADATA_OFFSET, after);
        if (sel.initial_write) {
            sim_otadata_entry_t initial =
                sim_otadata_make((uint32_t)boot.slot + 1u, SIM_OTA_STATE_VALID);
            CHECK(memcmp(&after[0], &initial, sizeof(initial)) == 0);
            CHECK(memcmp(&after[1], &predicted[1], sizeof(predicted[1])) == 0);
        } else {
            CHECK(memcmp(after, predicted, sizeof(after)) == 0);
        }
        /* Rule 4: after a boot with rollback, at most the active entry is PENDING_VERIFY, and only
         * because it was NEW. */
        for (int i = 0; i < 2 && rollback; i++) {
            if (after[i].ota_state == SIM_OTA_STATE_PENDING_VERIFY) {
                CHECK(i == sel.marked_pending && before[i].ota_state == SIM_OTA_STATE_NEW);
            }
        }

        int running = sim_ota_running_slot();
        int boot_slot = sim_ota_boot_slot();
        ota_img_state_t running_state = OTA_IMG_UNDEFINED;
        bool has_state = sim_ota_slot_state(running, &running_state) == OTA_OK;
        int action = (int)(rnd() % 3);

        if (action == 0) {
            /* The client's rule: confirm only when running == boot and state == PENDING_VERIFY.
             * Then the next boot runs the same slot again. */
            if (running == boot_slot && has_state && running_state == OTA_IMG_PENDING_VERIFY) {
                t_get_otadata(flash, T_OTADATA_OFFSET, after);
                int active = sim_otadata_active(after);
                if (active >= 0 && sim_otadata_slot_of_seq(after[active].ota_seq, 2) == running) {
                    CHECK(sim_ota_mark_valid() == OTA_OK);
                    sim_boot_result_t again;
                    CHECK(sim_bootloader_boot(&again) == SIM_BOOT_OK);
                    CHECK(again.slot == running && !again.fell_back);
                    confirms++;
                }
            }
        } else if (action == 1) {
            /* Rule 7's trap is observable: after a fallback with an active entry naming the broken
             * slot, mark_valid marks that entry VALID and the next boot selects the broken slot
             * again. */
            t_get_otadata(flash, T_OTADATA_OFFSET, after);
            int active = sim_otadata_active(after);
            if (boot.fell_back && active >= 0 && boot_slot >= 0 && boot_slot != running) {
                CHECK(sim_ota_mark_valid() == OTA_OK);
                t_get_otadata(flash, T_OTADATA_OFFSET, after);
                CHECK(after[active].ota_state == SIM_OTA_STATE_VALID);
                sim_boot_result_t again;
                CHECK(sim_bootloader_boot(&again) == SIM_BOOT_OK);
                CHECK(again.selected_index == boot_slot && again.fell_back &&
                      again.slot == running);
                traps++;
            }
        } else {
            /* set_boot_slot to the other slot: either the bootloader then selects it, or rule 12
             * produced an unusable 0xFFFFFFFF entry and nothing switches. */
            int target = running ^ 1;
            ota_status_t set = sim_ota_set_boot_slot(target);
            if (s_slot_good[layout][target]) {
                CHECK(set == OTA_OK);
                t_get_otadata(flash, T_OTADATA_OFFSET, after);
                bool wrapped = after[0].ota_seq == UINT32_MAX || after[1].ota_seq == UINT32_MAX;
                if (sim_ota_boot_slot() == target) {
                    sim_boot_result_t again;
                    CHECK(sim_bootloader_boot(&again) == SIM_BOOT_OK);
                    CHECK(again.slot == target);
                    switches++;
                } else {
                    CHECK(wrapped);
                    wraps++;
                }
            } else {
                CHECK(set == OTA_ERR_IMAGE_INVALID);
            }
        }
    }
    printf(
        "random otadata: seed %llu, %d states: %d fallbacks, %d confirms, %d traps, %d switches, "
        "%d seq wraps, %d unbootable\n",
        (unsigned long long)seed, count, fallbacks, confirms, traps, switches, wraps, no_boot);
    /* The generator must actually reach the interesting cases. */
    if (count >= 1000) {
        assert_true(fallbacks > 0 && confirms > 0 && traps > 0 && switches > 0 && no_boot > 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_otadata_states, setup_layouts,
                                        teardown_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
