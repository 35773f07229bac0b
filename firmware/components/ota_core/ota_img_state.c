/* ota_img_state.c — ota_img_state_name(), ota_running_img_state_name(). */
#include "ota_img_state.h"

const char *ota_img_state_name(ota_img_state_t state) {
    switch (state) {
    case OTA_IMG_NEW:
        return "new";
    case OTA_IMG_PENDING_VERIFY:
        return "pending_verify";
    case OTA_IMG_VALID:
        return "valid";
    case OTA_IMG_INVALID:
        return "invalid";
    case OTA_IMG_ABORTED:
        return "aborted";
    case OTA_IMG_UNDEFINED:
        break;
    }
    return "undefined";
}

const char *ota_running_img_state_name(void) {
    const int slot = ota_port_running_slot();
    if (slot == OTA_SLOT_NONE) {
        return "factory";
    }
    ota_img_state_t state;
    if (ota_port_slot_state(slot, &state) != OTA_OK) {
        return "undefined";
    }
    return ota_img_state_name(state);
}
