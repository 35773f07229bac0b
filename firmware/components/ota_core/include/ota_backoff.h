/*
 * ota_backoff.h — when to try again: capped exponential backoff after
 * failures, and the ±10 % jitter that keeps a fleet from polling in lockstep.
 */
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_BACKOFF_JITTER_PERCENT 10

/* initial_ms · 2^failures, at most max_ms (failures = 0 gives initial_ms). */
uint32_t ota_backoff_delay_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t failures);

/* interval ± OTA_BACKOFF_JITTER_PERCENT %, chosen by random_u32 (uniform). */
uint64_t ota_backoff_jittered_ms(uint64_t interval_ms, uint32_t random_u32);

#ifdef __cplusplus
}
#endif
