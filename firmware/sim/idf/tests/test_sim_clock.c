/* test_sim_clock.c — the virtual board's clock (sim_clock.h): time_scale x real time while no
 * task is due; held at most the lead past a registered wait whose task has not run (a board
 * process descheduled by a busy host does not leap over the firmware's timeouts); free again,
 * without catching up, once the task has run. The bounds hold on a loaded machine: real
 * sleeps only ever last longer than asked. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "sim_clock.h"

#define MS_US 1000
#define S_US 1000000

static void real_sleep_ms(long ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static int64_t real_now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * S_US + t.tv_nsec / 1000;
}

static void test_clock_runs_at_time_scale_when_no_task_is_due(void **state) {
    (void)state;
    sim_clock_start(1000.0);
    int64_t before_us = sim_clock_now_us();
    real_sleep_ms(20);
    int64_t after_us = sim_clock_now_us();
    assert_true(after_us - before_us >= 20 * S_US); /* 20 ms real x 1000 */
}

static void test_clock_holds_at_a_due_wait_until_its_task_runs(void **state) {
    (void)state;
    sim_clock_start(1000.0); /* lead: 2 ms real = 2 s virtual */
    sim_clock_wait_t wait;
    sim_clock_wait_begin_ms(&wait, 1000);
    real_sleep_ms(100); /* the task is "descheduled" for 100 s of virtual time */
    int64_t real_held_us = real_now_us();
    int64_t held_us = sim_clock_now_us();
    assert_true(sim_clock_wait_reached(&wait));
    assert_true(held_us <= wait.until_us + 2 * S_US);
    sim_clock_wait_end(&wait); /* the task ran */
    real_sleep_ms(10);
    int64_t free_us = sim_clock_now_us();
    int64_t real_free_us = real_now_us();
    /* Free again at full speed, from where it was held: no catch-up of the 100 s. */
    assert_true(free_us >= held_us + 10 * S_US);
    assert_true(free_us - held_us <= (real_free_us - real_held_us) * 1000);
}

static void test_the_earliest_due_wait_holds_the_clock(void **state) {
    (void)state;
    sim_clock_start(1000.0);
    sim_clock_wait_t later;
    sim_clock_wait_t earlier;
    sim_clock_wait_begin_ms(&later, 10000);
    sim_clock_wait_begin_ms(&earlier, 1000);
    real_sleep_ms(50);
    assert_true(sim_clock_now_us() <= earlier.until_us + 2 * S_US);
    assert_false(sim_clock_wait_reached(&later));
    sim_clock_wait_end(&earlier);
    real_sleep_ms(50);
    int64_t now_us = sim_clock_now_us();
    assert_true(sim_clock_wait_reached(&later));
    assert_true(now_us <= later.until_us + 2 * S_US);
    sim_clock_wait_end(&later);
}

static void test_lead_is_at_most_five_virtual_seconds(void **state) {
    (void)state;
    sim_clock_start(10000.0); /* 2 ms real would be 20 s virtual */
    sim_clock_wait_t wait;
    sim_clock_wait_begin_ms(&wait, 1000);
    real_sleep_ms(50);
    assert_true(sim_clock_now_us() <= wait.until_us + 5 * S_US);
    sim_clock_wait_end(&wait);
}

static void test_sleep_lasts_its_virtual_time_and_its_scaled_real_time(void **state) {
    (void)state;
    sim_clock_start(1000.0);
    int64_t real_before_us = real_now_us();
    int64_t before_us = sim_clock_now_us();
    sim_clock_sleep_ms(5000);
    int64_t after_us = sim_clock_now_us();
    int64_t real_after_us = real_now_us();
    assert_true(after_us - before_us >= 5000 * MS_US);
    assert_true(real_after_us - real_before_us >= 5 * MS_US - 100); /* 5 s virtual / 1000 */
}

static void test_the_clock_never_goes_back(void **state) {
    (void)state;
    sim_clock_start(3600.0);
    int64_t last_us = sim_clock_now_us();
    sim_clock_wait_t wait;
    for (int i = 0; i < 2000; i++) {
        if (i % 100 == 0) {
            sim_clock_wait_begin_ms(&wait, (uint64_t)(i % 7));
        }
        int64_t now_us = sim_clock_now_us();
        assert_true(now_us >= last_us);
        last_us = now_us;
        if (i % 100 == 99) {
            sim_clock_wait_end(&wait);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_runs_at_time_scale_when_no_task_is_due),
        cmocka_unit_test(test_clock_holds_at_a_due_wait_until_its_task_runs),
        cmocka_unit_test(test_the_earliest_due_wait_holds_the_clock),
        cmocka_unit_test(test_lead_is_at_most_five_virtual_seconds),
        cmocka_unit_test(test_sleep_lasts_its_virtual_time_and_its_scaled_real_time),
        cmocka_unit_test(test_the_clock_never_goes_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
