/* test_ota_backoff.c — capped exponential backoff and ±10 % jitter bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include "ota_backoff.h"
#include "ota_port.h"

static void test_backoff_doubles_then_caps(void **state) {
    (void)state;
    assert_int_equal(ota_backoff_delay_ms(2000, 300000, 0), 2000);
    assert_int_equal(ota_backoff_delay_ms(2000, 300000, 1), 4000);
    assert_int_equal(ota_backoff_delay_ms(2000, 300000, 2), 8000);
    assert_int_equal(ota_backoff_delay_ms(2000, 300000, 7), 256000);
    assert_int_equal(ota_backoff_delay_ms(2000, 300000, 8), 300000);
    assert_int_equal(ota_backoff_delay_ms(2000, 300000, 1000000), 300000);
    assert_int_equal(ota_backoff_delay_ms(UINT32_MAX, UINT32_MAX, 5), UINT32_MAX);
    assert_int_equal(ota_backoff_delay_ms(500, 400, 0), 400);
}

static void test_jitter_extremes(void **state) {
    (void)state;
    assert_int_equal(ota_backoff_jittered_ms(3600000, 0), 3240000);
    uint64_t top = ota_backoff_jittered_ms(3600000, UINT32_MAX);
    assert_true(top <= 3960000 && top >= 3959999);
    assert_int_equal(ota_backoff_jittered_ms(3600000, 0x80000000u), 3600000);
    assert_int_equal(ota_backoff_jittered_ms(0, 12345), 0);
}

static void test_jitter_bounds_and_spread_with_real_randomness(void **state) {
    (void)state;
    const uint64_t interval = 600000;
    uint64_t lo = UINT64_MAX;
    uint64_t hi = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t v = ota_backoff_jittered_ms(interval, ota_port_random_u32());
        assert_true(v >= interval * 9 / 10);
        assert_true(v <= interval * 11 / 10);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    /* 2000 uniform draws cover most of the ±10 % window: a fleet does not poll in lockstep. */
    assert_true(lo < interval * 92 / 100);
    assert_true(hi > interval * 108 / 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_then_caps),
        cmocka_unit_test(test_jitter_extremes),
        cmocka_unit_test(test_jitter_bounds_and_spread_with_real_randomness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
