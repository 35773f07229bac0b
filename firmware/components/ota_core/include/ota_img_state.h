/*
 * ota_img_state.h — names of the otadata image states (ota_img_state_t, the
 * values of ESP-IDF's esp_ota_img_states_t), as the device reports them: the
 * version check's `state=`, `ota status`'s "state" and the heartbeat's
 * "ota_state" (the controller's OTADATA_STATES).
 */
#pragma once

#include "ota_port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "new", "pending_verify", "valid", "invalid", "aborted" or "undefined"
 * (also for a value outside the enum). Never NULL. */
const char *ota_img_state_name(ota_img_state_t state);

/* The running image's state name (through ota_port_running_slot / ota_port_slot_state):
 * one of the above, "factory" when running from a factory partition, "undefined"
 * when otadata has no entry for the running slot. Never NULL. */
const char *ota_running_img_state_name(void);

#ifdef __cplusplus
}
#endif
