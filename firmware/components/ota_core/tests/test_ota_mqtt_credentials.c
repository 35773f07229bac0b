/* test_ota_mqtt_credentials.c — the MQTT password equals the controller's (Python hmac) value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <string.h>

#include "ota_mqtt_credentials.h"

/* hmac.new(token.encode(), b"csi-ota mqtt password v1", hashlib.sha256).hexdigest() */
static void test_matches_the_controller(void **state) {
    (void)state;
    char out[OTA_MQTT_PASSWORD_BUF_BYTES];
    assert_int_equal(ota_mqtt_password("dev_abc", out, sizeof(out)), OTA_OK);
    assert_string_equal(out, "2f82cd838d59ba46c761094ab3b5b04cf2a4a2fe3a6b7c683540f6ae61142552");
    char long_token[101];
    memset(long_token, 'x', 100);
    long_token[100] = '\0'; /* longer than one SHA-256 block: the key is hashed first */
    assert_int_equal(ota_mqtt_password(long_token, out, sizeof(out)), OTA_OK);
    assert_string_equal(out, "755d7923318ef90b3c98e347fdeacc54b0f7dec77c54d5f27491a0224bb595c7");
}

static void test_bad_arguments(void **state) {
    (void)state;
    char out[OTA_MQTT_PASSWORD_BUF_BYTES];
    assert_int_equal(ota_mqtt_password(NULL, out, sizeof(out)), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_mqtt_password("", out, sizeof(out)), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_mqtt_password("dev_abc", out, sizeof(out) - 1), OTA_ERR_INVALID_ARG);
    assert_int_equal(ota_mqtt_password("dev_abc", NULL, sizeof(out)), OTA_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_the_controller),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
