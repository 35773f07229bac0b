/*
 * freertos/FreeRTOS.h — the FreeRTOS types and macros the firmware uses, on POSIX threads
 * (as ESP-IDF's linux target does). A tick is 1 ms of the virtual board's clock
 * (CONFIG_FREERTOS_HZ 1000), so --time-scale speeds up every delay and timeout.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t TickType_t;
typedef long BaseType_t;
typedef unsigned long UBaseType_t;
typedef uint32_t StackType_t;

#define pdFALSE ((BaseType_t)0)
#define pdTRUE ((BaseType_t)1)
#define pdPASS pdTRUE
#define pdFAIL pdFALSE
#define portMAX_DELAY ((TickType_t)0xffffffffUL)
#define configTICK_RATE_HZ 1000
#define portTICK_PERIOD_MS ((TickType_t)1000 / configTICK_RATE_HZ)
#define pdMS_TO_TICKS(ms) ((TickType_t)(((uint64_t)(ms)*configTICK_RATE_HZ) / 1000u))
#define pdTICKS_TO_MS(ticks) ((uint32_t)(((uint64_t)(ticks)*1000u) / configTICK_RATE_HZ))
#define BIT0 0x00000001
#define BIT1 0x00000002
#define BIT2 0x00000004
#define BIT3 0x00000008

#ifdef __cplusplus
}
#endif
