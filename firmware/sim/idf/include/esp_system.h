/*
 * esp_system.h — esp_restart() (the virtual board resets: every task ends, RAM is lost,
 * the bootloader model runs again on the same flash) and the heap figures.
 */
#pragma once

#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

void esp_restart(void) __attribute__((noreturn));
uint32_t esp_get_free_heap_size(void);
uint32_t esp_get_minimum_free_heap_size(void);

#ifdef __cplusplus
}
#endif
