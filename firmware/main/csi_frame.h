/*
 * csi_frame.h — the compact binary CSI frame (docs/csi-frame.md). Pure C: no ESP-IDF
 * header, so the encoder is the same wherever it is compiled.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CSI_FRAME_MAGIC_0 0x43 /* 'C' */
#define CSI_FRAME_MAGIC_1 0x53 /* 'S' */
#define CSI_FRAME_VERSION 1
#define CSI_FRAME_HEADER_BYTES 40
#define CSI_FRAME_MAX_DATA_BYTES 640
#define CSI_FRAME_MAX_BYTES (CSI_FRAME_HEADER_BYTES + CSI_FRAME_MAX_DATA_BYTES)

/* flags */
#define CSI_FRAME_FLAG_FIRST_WORD_INVALID 0x01 /* first 4 data bytes are not valid */
#define CSI_FRAME_FLAG_BW_40MHZ 0x02
#define CSI_FRAME_FLAG_TRUNCATED 0x04 /* driver gave more than CSI_FRAME_MAX_DATA_BYTES */

typedef struct {
    uint8_t flags;
    uint32_t device_hash; /* csi_frame_device_hash(device_id) */
    uint32_t frame_seq;
    uint64_t timestamp_us;    /* esp_timer_get_time() at capture */
    uint32_t rx_timestamp_us; /* rx_ctrl.timestamp (radio clock) */
    uint8_t src_mac[6];
    int8_t rssi;
    int8_t noise_floor;
    uint8_t channel;
    uint8_t secondary_channel;
    uint8_t rate;
    uint8_t mcs;
    uint8_t sig_mode;
} csi_frame_meta_t;

/* FNV-1a 32-bit of the device id: names the sender in 4 bytes. */
uint32_t csi_frame_device_hash(const char *device_id);

/* Writes header + data (int8 pairs as the driver delivers them) into out.
 * Data beyond CSI_FRAME_MAX_DATA_BYTES is cut and flagged. Returns the frame
 * length, 0 if cap is too small. */
size_t csi_frame_encode(const csi_frame_meta_t *meta, const int8_t *data, size_t data_len,
                        uint8_t *out, size_t cap);
