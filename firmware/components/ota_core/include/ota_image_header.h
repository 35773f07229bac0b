/*
 * ota_image_header.h — the 24-byte esp_image_header_t at the start of an ESP
 * app image, checked before the first byte is written to flash.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ota_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_IMAGE_HEADER_BYTES 24
#define OTA_IMAGE_MAGIC 0xE9
#define OTA_IMAGE_MAX_SEGMENTS 16
/* max_chip_rev_full meaning "no upper limit" (ESP-IDF's IS_FIELD_SET: 0 or 0xFFFF). */
#define OTA_IMAGE_CHIP_REV_UNLIMITED 0xFFFF

typedef struct {
    uint8_t magic;
    uint8_t segment_count;
    uint32_t entry_addr;
    uint16_t chip_id;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    uint8_t hash_appended;
} ota_image_header_t;

/* OTA_ERR_IMAGE_HEADER when len is short, the magic is wrong or the segment count is impossible. */
ota_status_t ota_image_header_parse(const uint8_t *data, size_t len, ota_image_header_t *out);

/* OTA_ERR_CHIP_ID / OTA_ERR_CHIP_REVISION when the image is not for this chip. */
ota_status_t ota_image_header_check_chip(const ota_image_header_t *header, uint16_t chip_id,
                                         uint16_t chip_rev_full);

#ifdef __cplusplus
}
#endif
