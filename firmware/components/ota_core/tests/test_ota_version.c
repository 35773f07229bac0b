/* test_ota_version.c — semantic version parsing and precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include "ota_version.h"

static int cmp(const char *a, const char *b) {
    ota_version_t va;
    ota_version_t vb;
    assert_true(ota_version_parse(a, &va));
    assert_true(ota_version_parse(b, &vb));
    int c = ota_version_compare(&va, &vb);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

static void test_parse_valid(void **state) {
    (void)state;
    ota_version_t v;
    assert_true(ota_version_parse("1.2.3", &v));
    assert_int_equal(v.major, 1);
    assert_int_equal(v.minor, 2);
    assert_int_equal(v.patch, 3);
    assert_string_equal(v.prerelease, "");
    assert_true(ota_version_parse("v10.0.1-rc.1+build.7", &v));
    assert_int_equal(v.major, 10);
    assert_string_equal(v.prerelease, "rc.1");
    assert_true(ota_version_parse("0.0.0", &v));
    assert_true(ota_version_parse("4294967295.0.0", &v));
    assert_int_equal(v.major, 4294967295u);
}

static void test_parse_invalid(void **state) {
    (void)state;
    ota_version_t v;
    const char *bad[] = {"",
                         "1",
                         "1.2",
                         "1.2.3.4",
                         "01.2.3",
                         "1.2.3-",
                         "1.2.3-rc..1",
                         "1.2.3+",
                         "a.b.c",
                         "1.2.3 ",
                         "4294967296.0.0",
                         "1.2.3-rc_1",
                         "-1.2.3",
                         "1.2.3-rc.1+",
                         "1.0.0-01",    /* numeric pre-release identifier with a leading zero */
                         "1.0.0-rc.00", /* (semver 2.0 rule 9; the host refuses it too) */
                         "123456789012345678901234567890.1.1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(ota_version_parse(bad[i], &v));
    }
    assert_false(ota_version_parse(NULL, &v));
}

static void test_precedence(void **state) {
    (void)state;
    assert_int_equal(cmp("1.0.0", "2.0.0"), -1);
    assert_int_equal(cmp("2.0.0", "1.9.9"), 1);
    assert_int_equal(cmp("1.10.0", "1.9.0"), 1); /* numeric, not lexical */
    assert_int_equal(cmp("1.0.10", "1.0.9"), 1);
    assert_int_equal(cmp("1.0.0", "1.0.0"), 0);
    assert_int_equal(cmp("v1.0.0", "1.0.0"), 0);
    assert_int_equal(cmp("1.0.0+a", "1.0.0+b"), 0); /* build metadata ignored */
    /* semver 2.0 §11 example chain */
    const char *chain[] = {"1.0.0-alpha",  "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                           "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",       "1.0.0"};
    for (size_t i = 0; i + 1 < sizeof(chain) / sizeof(chain[0]); i++) {
        assert_int_equal(cmp(chain[i], chain[i + 1]), -1);
        assert_int_equal(cmp(chain[i + 1], chain[i]), 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_precedence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
