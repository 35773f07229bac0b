/*
 * sim_image.h — ESP32-S3 app image checks, as esp_image_format.c's
 * esp_image_verify(ESP_IMAGE_VERIFY) does them (no secure boot):
 *   magic 0xE9; chip id 9 and min/max chip revision; ≤ 16 segments; each
 *   segment length a multiple of 4 and < 16 MiB; segment 0 long enough for
 *   esp_app_desc_t, whose min/max_efuse_blk_rev_full must admit the chip's
 *   efuse block revision (v0.0); flash-mapped segments (DROM/IROM) at the same offset
 *   modulo the 64 KiB MMU page as their load address; the checksum byte
 *   (XOR of all segment data, seed 0xEF) at the end of the 16-byte padding;
 *   the appended SHA-256 of everything before it when hash_appended; the
 *   whole image inside the partition.
 * Not modelled: load-address overlap with bootloader RAM, secure boot.
 *
 * Also reads esp_app_desc_t (offset 0x20, magic 0xABCD5432) and the sim
 * behaviour marker "CSI_SIM_BEHAVIOUR:<name>\0" in segment 0 (docs/sim-markers.md).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_port.h"
#include "sim_flash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_IMAGE_MAGIC 0xE9u
#define SIM_IMAGE_HEADER_SIZE_BYTES 24u
#define SIM_IMAGE_SEGMENT_HEADER_SIZE_BYTES 8u
#define SIM_IMAGE_MAX_SEGMENTS 16u
#define SIM_IMAGE_CHECKSUM_SEED 0xEFu
#define SIM_IMAGE_DIGEST_SIZE_BYTES 32u
#define SIM_IMAGE_ESP32S3_CHIP_ID 9u
#define SIM_APP_DESC_OFFSET_BYTES 0x20u
#define SIM_APP_DESC_SIZE_BYTES 256u
#define SIM_APP_DESC_MAGIC 0xABCD5432u
#define SIM_BEHAVIOUR_PREFIX "CSI_SIM_BEHAVIOUR:"
#define SIM_BEHAVIOUR_NAME_MAX 32
/* The virtual chip's efuse block revision (major*100 + minor). */
#define SIM_IMAGE_EFUSE_BLK_REV_FULL 0u

typedef enum {
    SIM_IMAGE_OK = 0,
    SIM_IMAGE_ERR_MAGIC, /* "invalid magic byte (nothing flashed here?)" */
    SIM_IMAGE_ERR_CHIP_ID,
    SIM_IMAGE_ERR_CHIP_REVISION,
    SIM_IMAGE_ERR_SEGMENT_COUNT,
    SIM_IMAGE_ERR_SEGMENT_LENGTH,
    SIM_IMAGE_ERR_SEGMENT_MAPPING,
    SIM_IMAGE_ERR_APP_DESC, /* segment 0 too short for esp_app_desc_t */
    SIM_IMAGE_ERR_CHECKSUM,
    SIM_IMAGE_ERR_DIGEST,             /* appended SHA-256 mismatch */
    SIM_IMAGE_ERR_TOO_LARGE,          /* image does not fit in the partition */
    SIM_IMAGE_ERR_READ,               /* flash read failed / outside the chip */
    SIM_IMAGE_ERR_EFUSE_BLK_REVISION, /* esp_app_desc_t min/max_efuse_blk_rev_full */
} sim_image_result_t;

typedef struct {
    uint8_t segment_count;
    uint16_t chip_id;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    bool hash_appended;
    uint32_t entry_addr;
    uint32_t image_len_bytes; /* including padding, checksum and digest */
    bool has_app_desc;        /* esp_app_desc_t magic found at 0x20 */
    ota_app_desc_t app_desc;
    char behaviour[SIM_BEHAVIOUR_NAME_MAX]; /* "normal" when no marker */
} sim_image_info_t;

/* Verifies the image at part_offset (partition of part_size bytes) for a chip
 * of revision chip_rev_full. info may be NULL; why (may be NULL) gets an
 * ESP-IDF-like reason, e.g. "Checksum failed. Calculated 0x12 read 0x34". */
sim_image_result_t sim_image_verify(const sim_flash_t *flash, uint32_t part_offset_bytes,
                                    uint32_t part_size_bytes, uint16_t chip_rev_full,
                                    sim_image_info_t *info, char *why, size_t why_len);

/* esp_ota_get_partition_description: SIM_IMAGE_ERR_APP_DESC when the magic is wrong. */
sim_image_result_t sim_image_read_app_desc(const sim_flash_t *flash, uint32_t part_offset_bytes,
                                           ota_app_desc_t *desc);

const char *sim_image_result_str(sim_image_result_t result);

#ifdef __cplusplus
}
#endif
