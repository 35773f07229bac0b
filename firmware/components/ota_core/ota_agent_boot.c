/*
 * ota_agent_boot.c — confirm or roll back after a boot.
 *
 * mark_valid / mark_invalid act on the ACTIVE otadata entry (esp_ota_ops), so
 * the client confirms only when the running slot is the boot slot AND its
 * state is PENDING_VERIFY. Any other way of arriving at an older image after an
 * update (bootloader fallback, self-test failure) is reported as rolled_back.
 */
#include <string.h>

#include "ota_agent_internal.h"
#include "ota_log.h"

/* Runs every hook (and the test hook's forced failure); name of the first failure or NULL. */
static const char *ota_boot_run_selftests(ota_agent_t *client) {
    uint32_t fail_next = 0;
    if (ota_store_load_u32(OTA_KV_FAIL_NEXT, &fail_next) == OTA_OK && fail_next != 0) {
        ota_store_erase(OTA_KV_FAIL_NEXT);
        return "forced";
    }
    for (size_t i = 0; i < client->config.selftest_count; i++) {
        const ota_selftest_hook_t *hook = &client->config.selftests[i];
        uint32_t timeout_ms =
            hook->timeout_ms != 0 ? hook->timeout_ms : OTA_AGENT_DEFAULT_SELFTEST_TIMEOUT_MS;
        uint64_t start_ms = ota_port_monotonic_ms();
        ota_status_t status = hook->run(client->config.selftest_ctx, timeout_ms);
        uint64_t took_ms = ota_port_monotonic_ms() - start_ms;
        if (status != OTA_OK) {
            OTA_LOGW("self-test %s failed: %s", hook->name, ota_status_to_reason(status));
            return hook->name;
        }
        OTA_LOGI("self-test %s ok (%llu ms)", hook->name, (unsigned long long)took_ms);
    }
    return NULL;
}

static void ota_boot_details(const ota_agent_t *client, const ota_pending_record_t *pending,
                             bool has_pending, ota_report_details_t *details) {
    details->version = NULL;
    details->target_version = has_pending ? pending->target_version : client->running_version;
    details->target_sha256 = has_pending ? pending->target_sha256 : "";
    details->manifest_sequence = has_pending ? pending->sequence : 0;
    details->bytes_written = 0;
}

/* Running image is the boot image and PENDING_VERIFY: self-test, then confirm or roll back. */
static ota_status_t ota_boot_verify_new_image(ota_agent_t *client,
                                              const ota_pending_record_t *pending, bool has_pending,
                                              int running) {
    ota_report_details_t details;
    ota_boot_details(client, pending, has_pending, &details);
    client->phase = OTA_AGENT_SELFTEST;
    OTA_LOGI("running %s from slot %d (pending_verify): running self-test", client->running_version,
             running);
    ota_report(client, OTA_REPORT_PENDING_VERIFY, OTA_OK, &details);
    const char *failed = ota_boot_run_selftests(client);
    client->phase = OTA_AGENT_IDLE;
    if (failed == NULL) {
        OTA_LOGI("self-test passed; marking %s valid", client->running_version);
        ota_status_t status = ota_port_mark_valid();
        if (status != OTA_OK) {
            OTA_LOGE("mark valid failed: %s", ota_status_to_str(status));
            ota_report(client, OTA_REPORT_FAILED, status, &details);
            return status;
        }
        if (has_pending && pending->sequence > client->highest_sequence) {
            client->highest_sequence = pending->sequence;
            ota_store_save_u32(OTA_KV_HIGHEST_SEQ, pending->sequence);
        }
        /* The success report is persisted before the pending record goes: a power cut in
         * between leaves the record, and the next boot's "already confirmed" path finishes. */
        ota_report(client, OTA_REPORT_SUCCESS, OTA_OK, &details);
        ota_store_erase(OTA_KV_PENDING);
        ota_store_erase(OTA_KV_RETRY);
        return OTA_OK;
    }
    OTA_LOGE("self-test failed (%s): rolling back", failed);
    /* `version` names what the device goes back to (docs/device-protocol.md). */
    details.version = has_pending ? pending->previous_version : NULL;
    if (has_pending) {
        ota_retry_set_allowed(pending->target_sha256, pending->sequence, false); /* a bad image */
    }
    /* Persist the outcome first: after the reboot the old image repeats it until acked. */
    ota_report(client, OTA_REPORT_ROLLED_BACK, OTA_ERR_SELFTEST, &details);
    ota_store_erase(OTA_KV_PENDING);
    ota_status_t status = ota_port_mark_invalid_and_reboot(); /* returns only on failure */
    OTA_LOGE("rollback impossible: %s", ota_status_to_str(status));
    details.version = NULL; /* still running the new image */
    ota_report(client, OTA_REPORT_FAILED, OTA_ERR_ROLLBACK_FAILED, &details);
    return OTA_ERR_ROLLBACK_FAILED;
}

/* We are not in the image the pending record names: did the switch happen at all? */
static ota_status_t ota_boot_check_abandoned(ota_agent_t *client,
                                             const ota_pending_record_t *pending, int running,
                                             int boot) {
    ota_img_state_t state = OTA_IMG_UNDEFINED;
    ota_status_t have_state = ota_port_slot_state(pending->slot, &state);
    bool abandoned =
        boot == pending->slot ||
        (have_state == OTA_OK && (state == OTA_IMG_ABORTED || state == OTA_IMG_INVALID));
    /* The image never confirmed itself: a reset (or a crash) interrupted its first
     * boot, or the boot switch itself. Installing it again is allowed (bounded). */
    ota_retry_set_allowed(pending->target_sha256, pending->sequence, true);
    ota_store_erase(OTA_KV_PENDING);
    if (!abandoned) {
        OTA_LOGW("update to %s was not activated; will retry", pending->target_version);
        return OTA_OK;
    }
    OTA_LOGW("rollback detected: running %s, %s abandoned", client->running_version,
             pending->target_version);
    const ota_agent_report_t *last = &client->report;
    bool already = strcmp(last->state, OTA_REPORT_ROLLED_BACK) == 0 &&
                   strcmp(last->target_sha256, pending->target_sha256) == 0;
    if (!already) {
        ota_report_details_t details;
        ota_boot_details(client, pending, true, &details);
        ota_report(client, OTA_REPORT_ROLLED_BACK, OTA_ERR_ROLLED_BACK, &details);
    }
    (void)running;
    return OTA_ERR_ROLLED_BACK;
}

/* Fallback boot without our record (e.g. an image broken in flash after install). Each
 * fallback episode is reported once: the boot slot it fell back from is kept in
 * OTA_KV_FALLBACK until a boot runs the boot slot again, so every later boot of the same
 * episode stays quiet while a new fallback — after any normal boot, whatever the last
 * report was (an earlier rollback, even of the same version) — is reported again. */
static ota_status_t ota_boot_report_fallback(ota_agent_t *client, int running, int boot) {
    OTA_LOGW("fallback boot: running slot %d, boot slot %d", running, boot);
    uint32_t reported_slot = 0;
    bool already = ota_store_load_u32(OTA_KV_FALLBACK, &reported_slot) == OTA_OK &&
                   reported_slot == (uint32_t)boot;
    if (!already) {
        ota_report_details_t details = {.target_version = "", .target_sha256 = ""};
        ota_report(client, OTA_REPORT_ROLLED_BACK, OTA_ERR_ROLLED_BACK, &details);
        ota_store_save_u32(OTA_KV_FALLBACK, (uint32_t)boot);
    }
    return OTA_ERR_ROLLED_BACK;
}

ota_status_t ota_agent_on_boot(ota_agent_t *client) {
    int running = ota_port_running_slot();
    int boot = ota_port_boot_slot();
    ota_img_state_t state = OTA_IMG_UNDEFINED;
    bool have_state = running != OTA_SLOT_NONE && ota_port_slot_state(running, &state) == OTA_OK;
    ota_pending_record_t pending;
    bool has_pending = ota_store_load_pending(&pending) == OTA_OK;

    if (running != OTA_SLOT_NONE && running == boot && have_state &&
        state == OTA_IMG_PENDING_VERIFY) {
        return ota_boot_verify_new_image(client, &pending, has_pending, running);
    }
    bool confirmed = have_state && (state == OTA_IMG_VALID || state == OTA_IMG_UNDEFINED);
    if (has_pending && running == pending.slot && confirmed &&
        strcmp(client->running_version, pending.target_version) == 0) {
        /* Confirmed before a reset cut the bookkeeping short. */
        ota_report_details_t details;
        ota_boot_details(client, &pending, true, &details);
        OTA_LOGI("%s already confirmed", client->running_version);
        if (strcmp(client->report.state, OTA_REPORT_SUCCESS) != 0) {
            ota_report(client, OTA_REPORT_SUCCESS, OTA_OK, &details);
        }
        ota_store_erase(OTA_KV_PENDING); /* after the report, for the same reason */
        ota_store_erase(OTA_KV_RETRY);
        return OTA_OK;
    }
    if (has_pending) {
        return ota_boot_check_abandoned(client, &pending, running, boot);
    }
    if (running != boot && boot != OTA_SLOT_NONE) {
        return ota_boot_report_fallback(client, running, boot);
    }
    /* Booted what otadata selects: a later fallback is a new one. */
    uint32_t reported_slot = 0;
    if (ota_store_load_u32(OTA_KV_FALLBACK, &reported_slot) == OTA_OK) {
        ota_store_erase(OTA_KV_FALLBACK);
    }
    return OTA_OK;
}
