/* esp_chip_info.h — esp_chip_info() of the virtual ESP32-S3 (revision from --chip-rev-full). */
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CHIP_ESP32S3 = 9,
} esp_chip_model_t;

#define CHIP_FEATURE_EMB_FLASH (1UL << 0)
#define CHIP_FEATURE_WIFI_BGN (1UL << 1)
#define CHIP_FEATURE_BLE (1UL << 4)

typedef struct {
    esp_chip_model_t model;
    uint32_t features;
    uint16_t revision; /* major * 100 + minor */
    uint8_t cores;
} esp_chip_info_t;

void esp_chip_info(esp_chip_info_t *out_info);

#ifdef __cplusplus
}
#endif
