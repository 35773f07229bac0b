/*
 * csi_frame.c — encoder of the binary CSI frame; layout in docs/csi-frame.md.
 * Multi-byte fields are little-endian, written byte by byte (no struct packing).
 */
#include "csi_frame.h"

#include <string.h>

#define CSI_FRAME_FNV_OFFSET 2166136261u
#define CSI_FRAME_FNV_PRIME 16777619u

uint32_t csi_frame_device_hash(const char *device_id) {
    uint32_t hash = CSI_FRAME_FNV_OFFSET;
    for (const unsigned char *p = (const unsigned char *)device_id; *p != '\0'; p++) {
        hash ^= *p;
        hash *= CSI_FRAME_FNV_PRIME;
    }
    return hash;
}

static void csi_frame_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void csi_frame_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void csi_frame_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

size_t csi_frame_encode(const csi_frame_meta_t *meta, const int8_t *data, size_t data_len,
                        uint8_t *out, size_t cap) {
    uint8_t flags = meta->flags;
    if (data_len > CSI_FRAME_MAX_DATA_BYTES) {
        data_len = CSI_FRAME_MAX_DATA_BYTES;
        flags |= CSI_FRAME_FLAG_TRUNCATED;
    }
    if (data == NULL) {
        data_len = 0;
    }
    const size_t total = CSI_FRAME_HEADER_BYTES + data_len;
    if (out == NULL || cap < total) {
        return 0;
    }
    out[0] = CSI_FRAME_MAGIC_0;
    out[1] = CSI_FRAME_MAGIC_1;
    out[2] = CSI_FRAME_VERSION;
    out[3] = flags;
    csi_frame_put_u32(out + 4, meta->device_hash);
    csi_frame_put_u32(out + 8, meta->frame_seq);
    csi_frame_put_u64(out + 12, meta->timestamp_us);
    csi_frame_put_u32(out + 20, meta->rx_timestamp_us);
    memcpy(out + 24, meta->src_mac, 6);
    out[30] = (uint8_t)meta->rssi;
    out[31] = (uint8_t)meta->noise_floor;
    out[32] = meta->channel;
    out[33] = meta->secondary_channel;
    out[34] = meta->rate;
    out[35] = meta->mcs;
    out[36] = meta->sig_mode;
    out[37] = 0; /* reserved */
    csi_frame_put_u16(out + 38, (uint16_t)data_len);
    if (data_len > 0) {
        memcpy(out + CSI_FRAME_HEADER_BYTES, data, data_len);
    }
    return total;
}
