/*
 * ota_fake_port.h — a scripted ota_port.h for unit tests of the client's boot
 * decisions: the slots (running, boot, states, versions) are set by the test, the
 * KV store lives in memory, HTTP is unreachable (reports stay unacknowledged)
 * and ota_port_reboot() longjmp()s back to the test. Linked instead of a real
 * port, so these tests need neither flash nor network.
 */
#pragma once

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

#include "ota_port.h"

#define OTA_FAKE_SLOTS 2

typedef struct {
    int running_slot;
    int boot_slot;
    ota_img_state_t states[OTA_FAKE_SLOTS];
    bool has_state[OTA_FAKE_SLOTS];
    char versions[OTA_FAKE_SLOTS][32];
    uint32_t http_requests; /* every request fails with OTA_ERR_HTTP_CONNECT */
    uint32_t kv_writes;     /* kv_set + kv_erase calls so far */
    uint32_t kv_cut_at;     /* power cut (longjmp to ota_fake_reboot_jump) at that KV write */
} ota_fake_device_t;

extern ota_fake_device_t ota_fake;
extern jmp_buf ota_fake_reboot_jump;

/* Empties the KV store and sets a device running slot 0, boot slot 0, no otadata. */
void ota_fake_reset(void);
