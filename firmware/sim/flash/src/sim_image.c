/* sim_image.c — app image verification in the manner of esp_image_verify(). */
#include "sim_image.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sim_digest.h"
#include "sim_le.h"

#define IMAGE_MAX_FLASH_ADDR_SIZE_BYTES 0x1000000u /* segment lengths must stay below 16 MiB */
#define MMU_PAGE_SIZE_BYTES 0x10000u
#define CHUNK_BYTES 4096u

/* ESP32-S3 flash-mapped address windows (soc.h): segments here are mapped, not loaded. */
static const struct {
    uint32_t low;
    uint32_t high;
} MAPPED_WINDOWS[] = {
    {0x3C000000u, 0x3E000000u}, /* DROM */
    {0x42000000u, 0x44000000u}, /* IROM */
};

/* esp_app_desc_t field offsets. */
enum {
    APP_DESC_SECURE_VERSION = 4,
    APP_DESC_VERSION = 16,
    APP_DESC_PROJECT_NAME = 48,
    APP_DESC_IDF_VER = 112,
    APP_DESC_MIN_EFUSE_BLK_REV_FULL = 176,
    APP_DESC_MAX_EFUSE_BLK_REV_FULL = 178,
    APP_DESC_TEXT_LEN = 32,
};

/* esp_image_header_t field offsets (packed, 24 bytes). */
enum {
    HDR_MAGIC = 0,
    HDR_SEGMENT_COUNT = 1,
    HDR_ENTRY_ADDR = 4,
    HDR_CHIP_ID = 12,
    HDR_MIN_REV_FULL = 15,
    HDR_MAX_REV_FULL = 17,
    HDR_HASH_APPENDED = 23,
};

typedef struct {
    char *text;
    size_t len;
} why_t;

static void say(why_t why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(why_t why, const char *fmt, ...) {
    if (why.text == NULL || why.len == 0) {
        return;
    }
    va_list args;
    va_start(args, fmt);
    vsnprintf(why.text, why.len, fmt, args);
    va_end(args);
}

static bool should_map(uint32_t load_addr) {
    for (size_t i = 0; i < sizeof(MAPPED_WINDOWS) / sizeof(MAPPED_WINDOWS[0]); i++) {
        if (load_addr >= MAPPED_WINDOWS[i].low && load_addr < MAPPED_WINDOWS[i].high) {
            return true;
        }
    }
    return false;
}

/* rev_full field "set" = neither 0 nor 0xFFFF (IS_FIELD_SET in bootloader_common_loader.c). */
static bool rev_field_set(uint16_t rev_full) {
    return rev_full != 0 && rev_full != 0xFFFFu;
}

static void copy_text(char *dst, const uint8_t *src) {
    memcpy(dst, src, APP_DESC_TEXT_LEN);
    dst[APP_DESC_TEXT_LEN - 1] = '\0';
}

static void decode_app_desc(const uint8_t raw[SIM_APP_DESC_SIZE_BYTES], ota_app_desc_t *desc) {
    memset(desc, 0, sizeof(*desc));
    desc->secure_version = sim_le32(raw + APP_DESC_SECURE_VERSION);
    copy_text(desc->version, raw + APP_DESC_VERSION);
    copy_text(desc->project_name, raw + APP_DESC_PROJECT_NAME);
    copy_text(desc->idf_ver, raw + APP_DESC_IDF_VER);
}

sim_image_result_t sim_image_read_app_desc(const sim_flash_t *flash, uint32_t part_offset_bytes,
                                           ota_app_desc_t *desc) {
    uint8_t raw[SIM_APP_DESC_SIZE_BYTES];
    if (sim_flash_read(flash, part_offset_bytes + SIM_APP_DESC_OFFSET_BYTES, raw, sizeof(raw)) !=
        SIM_FLASH_OK) {
        return SIM_IMAGE_ERR_READ;
    }
    if (sim_le32(raw) != SIM_APP_DESC_MAGIC) {
        return SIM_IMAGE_ERR_APP_DESC;
    }
    decode_app_desc(raw, desc);
    return SIM_IMAGE_OK;
}

/* Looks for "CSI_SIM_BEHAVIOUR:<name>\0" inside segment 0's data. */
static void find_behaviour(const sim_flash_t *flash, uint32_t data_offset, uint32_t data_len,
                           char behaviour[SIM_BEHAVIOUR_NAME_MAX]) {
    static const char prefix[] = SIM_BEHAVIOUR_PREFIX;
    const size_t prefix_len = sizeof(prefix) - 1;
    strcpy(behaviour, "normal");
    /* The marker sits near the app description; look at the first 8 KiB of segment 0. */
    uint8_t window[8192];
    uint32_t len = data_len < sizeof(window) ? data_len : (uint32_t)sizeof(window);
    if (sim_flash_read(flash, data_offset, window, len) != SIM_FLASH_OK) {
        return;
    }
    for (uint32_t i = 0; i + prefix_len < len; i++) {
        if (memcmp(window + i, prefix, prefix_len) != 0) {
            continue;
        }
        uint32_t start = i + (uint32_t)prefix_len;
        size_t n = 0;
        while (start + n < len && window[start + n] != 0 && n < SIM_BEHAVIOUR_NAME_MAX - 1) {
            n++;
        }
        if (start + n < len && window[start + n] == 0 && n > 0) {
            memcpy(behaviour, window + start, n);
            behaviour[n] = '\0';
        }
        return;
    }
}

/* bootloader_common_check_efuse_blk_validity on esp_app_desc_t's min/max_efuse_blk_rev_full. */
static sim_image_result_t check_efuse_blk_revision(const sim_flash_t *flash,
                                                   uint32_t app_desc_offset, why_t why) {
    uint8_t raw[4];
    if (sim_flash_read(flash, app_desc_offset + APP_DESC_MIN_EFUSE_BLK_REV_FULL, raw,
                       sizeof(raw)) != SIM_FLASH_OK) {
        say(why, "cannot read the app description at 0x%x", (unsigned)app_desc_offset);
        return SIM_IMAGE_ERR_READ;
    }
    uint16_t min_rev = sim_le16(raw);
    uint16_t max_rev = sim_le16(raw + 2);
    const unsigned blk = SIM_IMAGE_EFUSE_BLK_REV_FULL;
    if (rev_field_set(min_rev) && blk < min_rev) {
        say(why, "Image requires efuse blk rev >= v%u.%u, but chip is v%u.%u", min_rev / 100u,
            min_rev % 100u, blk / 100u, blk % 100u);
        return SIM_IMAGE_ERR_EFUSE_BLK_REVISION;
    }
    if (rev_field_set(max_rev) && blk > max_rev) {
        say(why, "Image requires efuse blk rev <= v%u.%u, but chip is v%u.%u", max_rev / 100u,
            max_rev % 100u, blk / 100u, blk % 100u);
        return SIM_IMAGE_ERR_EFUSE_BLK_REVISION;
    }
    return SIM_IMAGE_OK;
}

typedef struct {
    const sim_flash_t *flash;
    sim_sha256_t sha;
    bool hashing;
    uint8_t checksum;
} verify_state_t;

/* Reads len bytes at offset through the checksum (if checksum) and the hash. */
static bool consume(verify_state_t *state, uint32_t offset, uint32_t len, bool checksum) {
    uint8_t chunk[CHUNK_BYTES];
    while (len > 0) {
        uint32_t take = len < CHUNK_BYTES ? len : CHUNK_BYTES;
        if (sim_flash_read(state->flash, offset, chunk, take) != SIM_FLASH_OK) {
            return false;
        }
        if (checksum) {
            for (uint32_t i = 0; i < take; i++) {
                state->checksum ^= chunk[i];
            }
        }
        if (state->hashing) {
            sim_sha256_update(&state->sha, chunk, take);
        }
        offset += take;
        len -= take;
    }
    return true;
}

sim_image_result_t sim_image_verify(const sim_flash_t *flash, uint32_t part_offset_bytes,
                                    uint32_t part_size_bytes, uint16_t chip_rev_full,
                                    sim_image_info_t *info, char *why_text, size_t why_len) {
    why_t why = {why_text, why_len};
    sim_image_info_t local;
    sim_image_info_t *out = info != NULL ? info : &local;
    memset(out, 0, sizeof(*out));
    strcpy(out->behaviour, "normal");
    say(why, "ok");

    uint8_t header[SIM_IMAGE_HEADER_SIZE_BYTES];
    if (sim_flash_read(flash, part_offset_bytes, header, sizeof(header)) != SIM_FLASH_OK) {
        say(why, "cannot read image header at 0x%x", (unsigned)part_offset_bytes);
        return SIM_IMAGE_ERR_READ;
    }
    out->segment_count = header[HDR_SEGMENT_COUNT];
    out->entry_addr = sim_le32(header + HDR_ENTRY_ADDR);
    out->chip_id = sim_le16(header + HDR_CHIP_ID);
    out->min_chip_rev_full = sim_le16(header + HDR_MIN_REV_FULL);
    out->max_chip_rev_full = sim_le16(header + HDR_MAX_REV_FULL);
    out->hash_appended = header[HDR_HASH_APPENDED] == 1;

    verify_state_t state = {
        .flash = flash, .hashing = out->hash_appended, .checksum = SIM_IMAGE_CHECKSUM_SEED};
    if (state.hashing) {
        sim_sha256_init(&state.sha);
        sim_sha256_update(&state.sha, header, sizeof(header));
    }

    if (header[HDR_MAGIC] != SIM_IMAGE_MAGIC) {
        say(why, "image at 0x%x has invalid magic byte (nothing flashed here?)",
            (unsigned)part_offset_bytes);
        return SIM_IMAGE_ERR_MAGIC;
    }
    if (out->chip_id != SIM_IMAGE_ESP32S3_CHIP_ID) {
        say(why, "mismatch chip ID, expected %u, found %u", SIM_IMAGE_ESP32S3_CHIP_ID,
            (unsigned)out->chip_id);
        return SIM_IMAGE_ERR_CHIP_ID;
    }
    if (chip_rev_full < out->min_chip_rev_full) {
        say(why, "chip revision check failed. Required >= v%u.%u, found v%u.%u.",
            (unsigned)out->min_chip_rev_full / 100, (unsigned)out->min_chip_rev_full % 100,
            (unsigned)chip_rev_full / 100, (unsigned)chip_rev_full % 100);
        return SIM_IMAGE_ERR_CHIP_REVISION;
    }
    if (rev_field_set(out->max_chip_rev_full) && chip_rev_full > out->max_chip_rev_full) {
        say(why, "chip revision check failed. Required <= v%u.%u, found v%u.%u.",
            (unsigned)out->max_chip_rev_full / 100, (unsigned)out->max_chip_rev_full % 100,
            (unsigned)chip_rev_full / 100, (unsigned)chip_rev_full % 100);
        return SIM_IMAGE_ERR_CHIP_REVISION;
    }
    if (out->segment_count > SIM_IMAGE_MAX_SEGMENTS) {
        say(why, "image at 0x%x segment count %u exceeds max %u", (unsigned)part_offset_bytes,
            (unsigned)out->segment_count, SIM_IMAGE_MAX_SEGMENTS);
        return SIM_IMAGE_ERR_SEGMENT_COUNT;
    }

    uint64_t next = (uint64_t)part_offset_bytes + SIM_IMAGE_HEADER_SIZE_BYTES;
    for (unsigned index = 0; index < out->segment_count; index++) {
        uint8_t seg[SIM_IMAGE_SEGMENT_HEADER_SIZE_BYTES];
        if (next + sizeof(seg) > sim_flash_size_bytes(flash) ||
            sim_flash_read(flash, (uint32_t)next, seg, sizeof(seg)) != SIM_FLASH_OK) {
            say(why, "bootloader_flash_read failed at 0x%08llx", (unsigned long long)next);
            return SIM_IMAGE_ERR_READ;
        }
        if (state.hashing) {
            sim_sha256_update(&state.sha, seg, sizeof(seg));
        }
        uint32_t load_addr = sim_le32(seg);
        uint32_t data_len = sim_le32(seg + 4);
        uint64_t data_offset = next + sizeof(seg);
        if ((data_len & 3u) != 0 || data_len >= IMAGE_MAX_FLASH_ADDR_SIZE_BYTES) {
            say(why, "invalid segment length 0x%x", (unsigned)data_len);
            return SIM_IMAGE_ERR_SEGMENT_LENGTH;
        }
        if (index == 0 && data_len < SIM_APP_DESC_SIZE_BYTES) {
            say(why, "Segment 0: length 0x%x is too short for app description", (unsigned)data_len);
            return SIM_IMAGE_ERR_APP_DESC;
        }
        if (should_map(load_addr) &&
            (data_offset % MMU_PAGE_SIZE_BYTES) != (load_addr % MMU_PAGE_SIZE_BYTES)) {
            say(why, "Segment %u load address 0x%08x, doesn't match data 0x%08llx", index,
                (unsigned)load_addr, (unsigned long long)data_offset);
            return SIM_IMAGE_ERR_SEGMENT_MAPPING;
        }
        if (index == 0) {
            sim_image_result_t efuse = check_efuse_blk_revision(flash, (uint32_t)data_offset, why);
            if (efuse != SIM_IMAGE_OK) {
                return efuse;
            }
        }
        if (data_offset + data_len > sim_flash_size_bytes(flash) ||
            !consume(&state, (uint32_t)data_offset, data_len, true)) {
            say(why, "segment %u data at 0x%08llx runs past the flash chip", index,
                (unsigned long long)data_offset);
            return SIM_IMAGE_ERR_READ;
        }
        if (index == 0) {
            find_behaviour(flash, (uint32_t)data_offset, data_len, out->behaviour);
        }
        next = data_offset + data_len;
    }

    uint32_t image_len = (uint32_t)(next - part_offset_bytes);
    uint32_t pad_len = ((image_len + 1u + 15u) & ~15u) - image_len;
    uint8_t pad[16];
    uint64_t pad_offset = (uint64_t)part_offset_bytes + image_len;
    if (pad_offset + pad_len > sim_flash_size_bytes(flash) ||
        sim_flash_read(flash, (uint32_t)pad_offset, pad, pad_len) != SIM_FLASH_OK) {
        say(why, "checksum byte at 0x%08llx is outside the flash chip",
            (unsigned long long)pad_offset);
        return SIM_IMAGE_ERR_READ;
    }
    uint8_t read_checksum = pad[pad_len - 1];
    if (read_checksum != state.checksum) {
        say(why, "Checksum failed. Calculated 0x%x read 0x%x", (unsigned)state.checksum,
            (unsigned)read_checksum);
        return SIM_IMAGE_ERR_CHECKSUM;
    }
    if (state.hashing) {
        sim_sha256_update(&state.sha, pad, pad_len);
    }
    image_len += pad_len;

    uint8_t stored_digest[SIM_IMAGE_DIGEST_SIZE_BYTES];
    if (out->hash_appended) {
        uint64_t digest_offset = (uint64_t)part_offset_bytes + image_len;
        if (digest_offset + sizeof(stored_digest) > sim_flash_size_bytes(flash) ||
            sim_flash_read(flash, (uint32_t)digest_offset, stored_digest, sizeof(stored_digest)) !=
                SIM_FLASH_OK) {
            say(why, "appended SHA-256 at 0x%08llx is outside the flash chip",
                (unsigned long long)digest_offset);
            return SIM_IMAGE_ERR_READ;
        }
        image_len += SIM_IMAGE_DIGEST_SIZE_BYTES;
    }
    out->image_len_bytes = image_len;
    if (image_len > part_size_bytes) {
        say(why, "Image length %u doesn't fit in partition length %u", (unsigned)image_len,
            (unsigned)part_size_bytes);
        return SIM_IMAGE_ERR_TOO_LARGE;
    }
    if (out->hash_appended) {
        uint8_t computed[SIM_IMAGE_DIGEST_SIZE_BYTES];
        sim_sha256_finish(&state.sha, computed);
        if (memcmp(computed, stored_digest, sizeof(computed)) != 0) {
            say(why, "Image hash failed - image is corrupt");
            return SIM_IMAGE_ERR_DIGEST;
        }
    }
    out->has_app_desc =
        sim_image_read_app_desc(flash, part_offset_bytes, &out->app_desc) == SIM_IMAGE_OK;
    return SIM_IMAGE_OK;
}

const char *sim_image_result_str(sim_image_result_t result) {
    switch (result) {
    case SIM_IMAGE_OK:
        return "ok";
    case SIM_IMAGE_ERR_MAGIC:
        return "invalid magic byte";
    case SIM_IMAGE_ERR_CHIP_ID:
        return "chip id mismatch";
    case SIM_IMAGE_ERR_CHIP_REVISION:
        return "chip revision outside the image's range";
    case SIM_IMAGE_ERR_SEGMENT_COUNT:
        return "too many segments";
    case SIM_IMAGE_ERR_SEGMENT_LENGTH:
        return "invalid segment length";
    case SIM_IMAGE_ERR_SEGMENT_MAPPING:
        return "mapped segment misaligned";
    case SIM_IMAGE_ERR_APP_DESC:
        return "no app description";
    case SIM_IMAGE_ERR_CHECKSUM:
        return "checksum failed";
    case SIM_IMAGE_ERR_DIGEST:
        return "appended SHA-256 mismatch";
    case SIM_IMAGE_ERR_TOO_LARGE:
        return "image does not fit in the partition";
    case SIM_IMAGE_ERR_READ:
        return "read failed";
    case SIM_IMAGE_ERR_EFUSE_BLK_REVISION:
        return "efuse block revision outside the image's range";
    }
    return "unknown";
}
