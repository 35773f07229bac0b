/* ota_image_header.c — esp_image_header_t parsing and the chip checks. */
#include "ota_image_header.h"

#include <stdbool.h>
#include <string.h>

/* Byte offsets inside esp_image_header_t (esp_app_format.h). */
enum {
    OTA_IMAGE_OFFSET_MAGIC = 0,
    OTA_IMAGE_OFFSET_SEGMENT_COUNT = 1,
    OTA_IMAGE_OFFSET_ENTRY_ADDR = 4,
    OTA_IMAGE_OFFSET_CHIP_ID = 12,
    OTA_IMAGE_OFFSET_MIN_REV_FULL = 15,
    OTA_IMAGE_OFFSET_MAX_REV_FULL = 17,
    OTA_IMAGE_OFFSET_HASH_APPENDED = 23,
};

static uint16_t ota_image_le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t ota_image_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

ota_status_t ota_image_header_parse(const uint8_t *data, size_t len, ota_image_header_t *out) {
    if (data == NULL || out == NULL || len < OTA_IMAGE_HEADER_BYTES) {
        return OTA_ERR_IMAGE_HEADER;
    }
    memset(out, 0, sizeof(*out));
    out->magic = data[OTA_IMAGE_OFFSET_MAGIC];
    out->segment_count = data[OTA_IMAGE_OFFSET_SEGMENT_COUNT];
    out->entry_addr = ota_image_le32(data + OTA_IMAGE_OFFSET_ENTRY_ADDR);
    out->chip_id = ota_image_le16(data + OTA_IMAGE_OFFSET_CHIP_ID);
    out->min_chip_rev_full = ota_image_le16(data + OTA_IMAGE_OFFSET_MIN_REV_FULL);
    out->max_chip_rev_full = ota_image_le16(data + OTA_IMAGE_OFFSET_MAX_REV_FULL);
    out->hash_appended = data[OTA_IMAGE_OFFSET_HASH_APPENDED];
    if (out->magic != OTA_IMAGE_MAGIC) {
        return OTA_ERR_IMAGE_HEADER;
    }
    if (out->segment_count == 0 || out->segment_count > OTA_IMAGE_MAX_SEGMENTS) {
        return OTA_ERR_IMAGE_HEADER;
    }
    return OTA_OK;
}

ota_status_t ota_image_header_check_chip(const ota_image_header_t *header, uint16_t chip_id,
                                         uint16_t chip_rev_full) {
    if (header->chip_id != chip_id) {
        return OTA_ERR_CHIP_ID;
    }
    if (chip_rev_full < header->min_chip_rev_full) {
        return OTA_ERR_CHIP_REVISION;
    }
    /* Like ESP-IDF's IS_FIELD_SET(): 0 and 0xFFFF mean "no upper limit". */
    bool max_is_set =
        header->max_chip_rev_full != OTA_IMAGE_CHIP_REV_UNLIMITED && header->max_chip_rev_full != 0;
    if (max_is_set && chip_rev_full > header->max_chip_rev_full) {
        return OTA_ERR_CHIP_REVISION;
    }
    return OTA_OK;
}
