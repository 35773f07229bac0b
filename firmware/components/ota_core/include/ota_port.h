/*
 * ota_port.h — everything the portable OTA core asks of a platform.
 *
 * One header of plain functions, in the manner of MCUboot's flash_map_backend.h:
 * every function here is required (no weak symbols), and a port implements
 * them all in its own files. One port exists, firmware/components/ota_port_espidf
 * (ESP-IDF v6); the virtual ESP32-S3 runs that same port over a host implementation
 * of the ESP-IDF APIs (firmware/sim/idf) and a NOR flash model (firmware/sim/flash).
 *
 * Slot operations have esp_ota_ops semantics (see docs/architecture.md and
 * ../shared/design/esp-idf-otadata-behaviour.md); in particular mark_valid and
 * mark_invalid act on the ACTIVE otadata entry, which is why the core checks
 * running == boot && state == PENDING_VERIFY before confirming.
 *
 * Nothing here may block for longer than the timeout it is given.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* OTA slots (ota_0, ota_1, …) — esp_ota_ops semantics                       */
/* ------------------------------------------------------------------------ */

/* Values are ESP-IDF's esp_ota_img_states_t. */
typedef enum {
    OTA_IMG_NEW = 0x0,
    OTA_IMG_PENDING_VERIFY = 0x1,
    OTA_IMG_VALID = 0x2,
    OTA_IMG_INVALID = 0x3,
    OTA_IMG_ABORTED = 0x4,
    OTA_IMG_UNDEFINED = 0xFFFFFFFF,
} ota_img_state_t;

#define OTA_SLOT_NONE (-1)

/* The app description of an image (the fields of esp_app_desc_t we use). */
typedef struct {
    char version[32];
    char project_name[32];
    char idf_ver[32];
    uint32_t secure_version;
} ota_app_desc_t;

/* Slot of the running app (esp_ota_get_running_partition), OTA_SLOT_NONE if factory. */
int ota_port_running_slot(void);
/* Slot the otadata selects (esp_ota_get_boot_partition), OTA_SLOT_NONE if none. */
int ota_port_boot_slot(void);
/* Slot the next update goes to (esp_ota_get_next_update_partition(NULL)). */
int ota_port_next_update_slot(void);
ota_status_t ota_port_slot_size(int slot, uint32_t *size_bytes);
/* esp_ota_get_state_partition: OTA_ERR_NOT_FOUND when otadata has no entry for it. */
ota_status_t ota_port_slot_state(int slot, ota_img_state_t *state);
/* esp_ota_get_partition_description. */
ota_status_t ota_port_slot_app_desc(int slot, ota_app_desc_t *desc);
ota_status_t ota_port_slot_read(int slot, uint32_t offset_bytes, void *buf, size_t len);

/* An image being written: esp_ota_begin / esp_ota_resume … esp_ota_end. */
typedef struct ota_port_update ota_port_update_t;

/* esp_ota_begin: erases what image_size_bytes needs (OTA_SIZE_UNKNOWN not used). */
ota_status_t ota_port_update_begin(int slot, uint32_t image_size_bytes, ota_port_update_t **out);
/* esp_ota_resume: continue at offset_bytes, erased area already prepared up to image size. */
ota_status_t ota_port_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                    ota_port_update_t **out);
ota_status_t ota_port_update_write(ota_port_update_t *update, const void *data, size_t len);
/* esp_ota_end: validates the image (segments, checksum, appended SHA-256); frees `update`. */
ota_status_t ota_port_update_end(ota_port_update_t *update);
/* esp_ota_abort: frees `update`, the slot keeps what was written. */
void ota_port_update_abort(ota_port_update_t *update);

ota_status_t ota_port_set_boot_slot(int slot);       /* esp_ota_set_boot_partition */
ota_status_t ota_port_mark_valid(void);              /* esp_ota_mark_app_valid_cancel_rollback */
ota_status_t ota_port_mark_invalid_and_reboot(void); /* returns only on failure */
/* esp_ota_check_rollback_is_possible */
bool ota_port_rollback_possible(void);
/* esp_ota_get_last_invalid_partition: OTA_SLOT_NONE if none. */
int ota_port_last_invalid_slot(void);

/* Chip identity, for the image header check (ESP32-S3: chip_id 9). */
void ota_port_chip_info(uint16_t *chip_id, uint16_t *chip_rev_full);

/* ------------------------------------------------------------------------ */
/* HTTP(S) — one request at a time, body pulled by the caller               */
/* ------------------------------------------------------------------------ */

/* Sizes of the response fields below. A header longer than its field is refused,
 * never truncated: the field stays "" and its *_too_long flag is set
 * (ota_http_head_header() does this for both ports). The controller refuses
 * configs whose X-Device-Config would not fit (csi_ota.controller.registry). */
#define OTA_PORT_FIRMWARE_URL_MAX_BYTES 256
#define OTA_PORT_DEVICE_CONFIG_MAX_BYTES 768

typedef struct {
    const char *method;       /* "GET" or "POST" */
    const char *url;          /* absolute https:// URL (http:// only in test builds) */
    const char *bearer_token; /* Authorization: Bearer …, NULL for none */
    const char *content_type; /* POST only */
    const void *body;         /* POST only */
    size_t body_len;
    int64_t range_start; /* >= 0: send "Range: bytes=<start>-"; -1: no Range */
    uint32_t timeout_ms; /* connect and per-read inactivity timeout */
} ota_port_http_request_t;

typedef struct {
    int status;                  /* HTTP status code after redirects */
    int64_t content_length;      /* -1 if unknown (chunked) */
    int64_t content_range_start; /* from Content-Range, -1 if absent */
    int64_t content_range_end;
    int64_t content_range_total;
    char etag[72];                                        /* without quotes; "" if absent */
    char firmware_url[OTA_PORT_FIRMWARE_URL_MAX_BYTES];   /* X-Firmware-Url; "" if absent */
    char device_config[OTA_PORT_DEVICE_CONFIG_MAX_BYTES]; /* X-Device-Config (form-encoded) */
    bool firmware_url_too_long;                           /* X-Firmware-Url refused */
    bool device_config_too_long;                          /* X-Device-Config refused */
} ota_port_http_response_t;

typedef struct ota_port_http ota_port_http_t;

/* Sends the request and reads the response head. Follows redirects. */
ota_status_t ota_port_http_open(const ota_port_http_request_t *request, ota_port_http_t **out,
                                ota_port_http_response_t *response);
/* Reads up to cap bytes of body; *n_read == 0 with OTA_OK means end of body. */
ota_status_t ota_port_http_read(ota_port_http_t *http, void *buf, size_t cap, size_t *n_read);
/* Ends the request; the connection may stay open for the next one (keep-alive). */
void ota_port_http_close(ota_port_http_t *http);

/* ------------------------------------------------------------------------ */
/* Crypto                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct ota_port_sha256 ota_port_sha256_t;
ota_status_t ota_port_sha256_begin(ota_port_sha256_t **out);
ota_status_t ota_port_sha256_update(ota_port_sha256_t *ctx, const void *data, size_t len);
/* Writes the digest and frees ctx. */
ota_status_t ota_port_sha256_finish(ota_port_sha256_t *ctx, uint8_t digest[32]);
/* Frees ctx without a digest. */
void ota_port_sha256_discard(ota_port_sha256_t *ctx);

/* ECDSA P-256 over a SHA-256 digest. public_key: uncompressed point 04||X||Y;
 * signature: raw r||s, 32 bytes each, big-endian. OTA_ERR_MANIFEST_SIGNATURE on mismatch. */
ota_status_t ota_port_ecdsa_p256_verify(const uint8_t public_key[65], const uint8_t digest[32],
                                        const uint8_t signature[64]);

/* ------------------------------------------------------------------------ */
/* Key-value storage (NVS namespace "csi_ota"; keys at most 15 characters)   */
/* ------------------------------------------------------------------------ */

/* *len: in = capacity, out = stored length. OTA_ERR_NOT_FOUND if absent. */
ota_status_t ota_port_kv_get(const char *key, void *buf, size_t *len);
/* Atomic: after a power cut the key holds the old or the new value. */
ota_status_t ota_port_kv_set(const char *key, const void *buf, size_t len);
ota_status_t ota_port_kv_erase(const char *key);

/* ------------------------------------------------------------------------ */
/* Time, randomness, reboot, log                                             */
/* ------------------------------------------------------------------------ */

uint64_t ota_port_monotonic_ms(void);
void ota_port_sleep_ms(uint32_t ms);
uint32_t ota_port_random_u32(void);
/* esp_restart(); does not return. */
void ota_port_reboot(void);

typedef enum {
    OTA_LOG_ERROR = 1,
    OTA_LOG_WARN = 2,
    OTA_LOG_INFO = 3,
    OTA_LOG_DEBUG = 4,
} ota_log_level_t;

/* One log line, ESP-IDF style: "I (1234) tag: message". */
void ota_port_log(ota_log_level_t level, const char *tag, const char *fmt, va_list args);

#ifdef __cplusplus
}
#endif
