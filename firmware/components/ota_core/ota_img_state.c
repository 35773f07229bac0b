/* ota_img_state.c — ota_img_state_name(). */
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
