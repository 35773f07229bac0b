/* ota_backoff.c — capped exponential backoff and interval jitter. */
#include "ota_backoff.h"

uint32_t ota_backoff_delay_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t failures) {
    uint64_t delay = initial_ms;
    for (uint32_t i = 0; i < failures && delay < max_ms; i++) {
        delay *= 2u;
    }
    return delay > max_ms ? max_ms : (uint32_t)delay;
}

uint64_t ota_backoff_jittered_ms(uint64_t interval_ms, uint32_t random_u32) {
    uint64_t span = interval_ms * 2u * OTA_BACKOFF_JITTER_PERCENT / 100u; /* width of the window */
    uint64_t low = interval_ms - interval_ms * OTA_BACKOFF_JITTER_PERCENT / 100u;
    /* random_u32 / 2^32 scales into [0, span]. */
    uint64_t offset = (span * (uint64_t)random_u32) >> 32;
    return low + offset;
}
