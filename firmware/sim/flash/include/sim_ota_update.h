/*
 * sim_ota_update.h — bookkeeping of the images being written through
 * sim_ota_update_begin/resume … end/abort (sim_ota_update.c).
 */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* Frees every open sim_ota_update_t (what a reset does to RAM). The
 * bootloader model calls it on every boot. */
void sim_ota_update_reset_all(void);

/* Number of updates begun/resumed and not yet ended/aborted. */
int sim_ota_update_open_count(void);

#ifdef __cplusplus
}
#endif
