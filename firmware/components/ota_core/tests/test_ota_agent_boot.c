/*
 * test_ota_agent_boot.c — the boot decision over a scripted port (ota_fake_port.c):
 * every distinct rollback is reported, each only once.
 *
 * The sequence is tests_hw's s6 followed by s7 on one board, whose NVS survives between
 * tests: an update that crashed before confirming (the bootloader abandoned it; the
 * pending record names it), a normal boot, then an image broken in flash after install
 * (a fallback boot with no record). Both are rollbacks the controller must hear about.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_fake_port.h"

static void fake_boot(ota_agent_t *client, int running, int boot) {
    ota_fake.running_slot = running;
    ota_fake.boot_slot = boot;
    ota_agent_config_t config;
    ota_agent_config_defaults(&config);
    strcpy(config.project_name, "csi_sensor");
    strcpy(config.deployment.device_id, "csi-test-01");
    strcpy(config.deployment.version_check_url, "http://127.0.0.1:1/api/ota/version");
    strcpy(config.deployment.update_url, "http://127.0.0.1:1/firmware/latest");
    config.deployment.check_interval_sec = 3600;
    assert_int_equal(ota_agent_init(client, &config), OTA_OK);
}

static int setup(void **state) {
    (void)state;
    ota_fake_reset();
    strcpy(ota_fake.versions[0], "1.0.0");
    strcpy(ota_fake.versions[1], "2.0.0");
    ota_fake.has_state[0] = true;
    ota_fake.states[0] = OTA_IMG_VALID;
    return 0;
}

/* s6: v2 installed in slot 1 and booted, crashed before confirming; the bootloader
 * marked it ABORTED and booted v1 again. */
static void install_v2_in_slot_1(ota_img_state_t state) {
    ota_pending_record_t pending = {.sequence = 41, .slot = 1};
    strcpy(pending.target_version, "2.0.0");
    memset(pending.target_sha256, 'a', 64);
    strcpy(pending.previous_version, "1.0.0");
    assert_int_equal(ota_store_save_pending(&pending), OTA_OK);
    ota_fake.has_state[1] = true;
    ota_fake.states[1] = state;
}

static void crash_before_confirm(void) {
    install_v2_in_slot_1(OTA_IMG_ABORTED);
}

static void test_two_different_rollbacks_in_a_row_are_both_reported(void **state) {
    (void)state;
    ota_agent_t client;

    crash_before_confirm();
    fake_boot(&client, 0, 0);
    assert_int_equal(ota_agent_on_boot(&client), OTA_ERR_ROLLED_BACK);
    assert_int_equal(client.report.seq, 1);
    assert_string_equal(client.report.state, OTA_REPORT_ROLLED_BACK);
    assert_string_equal(client.report.target_version, "2.0.0");

    /* The board is re-flashed with v1 (otadata erased): a normal boot reports nothing. */
    ota_fake.has_state[1] = false;
    fake_boot(&client, 0, 0);
    assert_int_equal(ota_agent_on_boot(&client), OTA_OK);
    assert_int_equal(client.report.seq, 1);

    /* s7: v2 written to slot 1 and selected, then corrupted in flash: the bootloader
     * falls back to slot 0 while otadata still selects slot 1. No pending record. */
    ota_fake.has_state[1] = true;
    ota_fake.states[1] = OTA_IMG_NEW;
    fake_boot(&client, 0, 1);
    assert_int_equal(ota_agent_on_boot(&client), OTA_ERR_ROLLED_BACK);
    assert_int_equal(client.report.seq, 2); /* the bug: this second rollback went unreported */
    assert_string_equal(client.report.state, OTA_REPORT_ROLLED_BACK);
    assert_string_equal(client.report.version, "1.0.0");
    assert_false(client.report.acked);

    /* The same fallback at every later boot is the same episode: reported once. */
    for (int i = 0; i < 3; i++) {
        fake_boot(&client, 0, 1);
        assert_int_equal(ota_agent_on_boot(&client), OTA_ERR_ROLLED_BACK);
        assert_int_equal(client.report.seq, 2);
    }
}

static void test_same_fallback_again_after_a_normal_boot_is_reported_again(void **state) {
    (void)state;
    ota_agent_t client;
    ota_fake.has_state[1] = true;
    ota_fake.states[1] = OTA_IMG_NEW;
    fake_boot(&client, 0, 1);
    assert_int_equal(ota_agent_on_boot(&client), OTA_ERR_ROLLED_BACK);
    assert_int_equal(client.report.seq, 1);

    fake_boot(&client, 0, 0); /* re-flashed: boots what otadata selects */
    assert_int_equal(ota_agent_on_boot(&client), OTA_OK);
    assert_int_equal(client.report.seq, 1);

    fake_boot(&client, 0, 1); /* s7 again on the same board */
    assert_int_equal(ota_agent_on_boot(&client), OTA_ERR_ROLLED_BACK);
    assert_int_equal(client.report.seq, 2);
    assert_string_equal(client.report.state, OTA_REPORT_ROLLED_BACK);
}

static void test_abandoned_update_is_reported_once(void **state) {
    (void)state;
    ota_agent_t client;
    crash_before_confirm();
    fake_boot(&client, 0, 0);
    assert_int_equal(ota_agent_on_boot(&client), OTA_ERR_ROLLED_BACK);
    assert_int_equal(client.report.seq, 1);
    fake_boot(&client, 0, 0); /* the pending record is gone: nothing more to report */
    assert_int_equal(ota_agent_on_boot(&client), OTA_OK);
    assert_int_equal(client.report.seq, 1);
}

/* A power cut at any NVS write while v2 confirms itself (pending_verify report, mark valid,
 * highest sequence, pending and retry records erased, success report): after the reboot the
 * device still ends on a persisted success report for v2, and no pending record is left. */
static void test_a_cut_at_any_nvs_write_while_confirming_still_reports_success(void **state) {
    (void)state;
    static ota_agent_t client;
    static uint32_t cut;
    static bool finished;
    finished = false;
    for (cut = 1; cut < 40 && !finished; cut++) {
        setup(NULL);
        install_v2_in_slot_1(OTA_IMG_PENDING_VERIFY);
        ota_fake.kv_writes = 0;
        ota_fake.kv_cut_at = cut;
        if (setjmp(ota_fake_reboot_jump) == 0) {
            fake_boot(&client, 1, 1);
            assert_int_equal(ota_agent_on_boot(&client), OTA_OK);
            finished = true; /* no cut: every write of the confirmation was passed */
        }
        ota_fake.kv_cut_at = 0;
        fake_boot(&client, 1, 1);
        assert_int_equal(ota_agent_on_boot(&client), OTA_OK);
        assert_int_equal(ota_fake.states[1], OTA_IMG_VALID);
        if (strcmp(client.report.state, OTA_REPORT_SUCCESS) != 0) {
            fail_msg("cut at NVS write %u: last report %s, not success", (unsigned)cut,
                     client.report.state);
        }
        ota_pending_record_t left;
        assert_int_not_equal(ota_store_load_pending(&left), OTA_OK);
    }
    assert_true(finished);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_two_different_rollbacks_in_a_row_are_both_reported, setup),
        cmocka_unit_test_setup(test_same_fallback_again_after_a_normal_boot_is_reported_again,
                               setup),
        cmocka_unit_test_setup(test_abandoned_update_is_reported_once, setup),
        cmocka_unit_test_setup(test_a_cut_at_any_nvs_write_while_confirming_still_reports_success,
                               setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
