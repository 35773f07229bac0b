/*
 * ota_status.h — the one status enum of csi-ota's OTA core and ports.
 *
 * 0 is OK. Every other value names one reason; the same name (lower-cased,
 * without the OTA_ prefix) is the `reason` the device reports to the
 * controller, so the names are a wire interface: append, never renumber.
 */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description) */
#define OTA_STATUS_LIST(X)                                                                         \
    X(OTA_OK, 0, "ok")                                                                             \
    X(OTA_ERR_FAIL, 1, "generic failure")                                                          \
    X(OTA_ERR_INVALID_ARG, 2, "invalid argument")                                                  \
    X(OTA_ERR_NO_MEM, 3, "out of memory")                                                          \
    X(OTA_ERR_NOT_FOUND, 4, "not found")                                                           \
    X(OTA_ERR_TIMEOUT, 5, "timed out")                                                             \
    X(OTA_ERR_IO, 6, "I/O error")                                                                  \
    X(OTA_ERR_BUSY, 7, "busy")                                                                     \
    X(OTA_ERR_NOT_SUPPORTED, 8, "not supported")                                                   \
    X(OTA_ERR_HTTP_CONNECT, 20, "HTTP connection failed")                                          \
    X(OTA_ERR_HTTP_STATUS, 21, "unexpected HTTP status")                                           \
    X(OTA_ERR_HTTP_RANGE, 22, "server did not honour Range")                                       \
    X(OTA_ERR_HTTP_TRUNCATED, 23, "HTTP body ended early")                                         \
    X(OTA_ERR_HTTP_AUTH, 24, "controller refused the device token")                                \
    X(OTA_ERR_MANIFEST_FORMAT, 40, "manifest malformed")                                           \
    X(OTA_ERR_MANIFEST_SIGNATURE, 41, "manifest signature invalid")                                \
    X(OTA_ERR_MANIFEST_KEY, 42, "manifest signed by an unknown key")                               \
    X(OTA_ERR_MANIFEST_PROJECT, 43, "manifest for another project")                                \
    X(OTA_ERR_MANIFEST_REPLAY, 44, "manifest sequence not newer (replay)")                         \
    X(OTA_ERR_DOWNGRADE, 45, "older version without signed rollback")                              \
    X(OTA_ERR_SECURE_VERSION, 46, "secure_version below the device's")                             \
    X(OTA_ERR_SAME_VERSION, 47, "already running this version")                                    \
    X(OTA_ERR_IMAGE_TOO_LARGE, 60, "image larger than the OTA slot")                               \
    X(OTA_ERR_IMAGE_HEADER, 61, "image header invalid")                                            \
    X(OTA_ERR_CHIP_ID, 62, "image built for another chip")                                         \
    X(OTA_ERR_CHIP_REVISION, 63, "chip revision outside the image's range")                        \
    X(OTA_ERR_IMAGE_SIZE, 64, "image size differs from the manifest")                              \
    X(OTA_ERR_IMAGE_DIGEST, 65, "image SHA-256 differs from the manifest")                         \
    X(OTA_ERR_IMAGE_INVALID, 66, "image failed validation (esp_ota_end)")                          \
    X(OTA_ERR_FLASH_WRITE, 80, "flash write failed")                                               \
    X(OTA_ERR_FLASH_ERASE, 81, "flash erase failed")                                               \
    X(OTA_ERR_FLASH_READ, 82, "flash read failed")                                                 \
    X(OTA_ERR_NO_UPDATE_SLOT, 83, "no OTA slot to update")                                         \
    X(OTA_ERR_SET_BOOT, 84, "setting the boot partition failed")                                   \
    X(OTA_ERR_PENDING_VERIFY, 85, "running app not yet confirmed")                                 \
    X(OTA_ERR_SELFTEST, 100, "self-test failed after update")                                      \
    X(OTA_ERR_ROLLED_BACK, 101, "new image rolled back")                                           \
    X(OTA_ERR_ROLLBACK_FAILED, 102, "rollback impossible")                                         \
    X(OTA_ERR_ABORTED, 103, "update aborted by the controller")                                    \
    X(OTA_ERR_CONFIG, 120, "device configuration invalid")                                         \
    X(OTA_ERR_CRYPTO, 121, "crypto backend failure")                                               \
    X(OTA_ERR_HEADER_TOO_LONG, 122, "response header longer than the device holds")                \
    X(OTA_ERR_INSECURE_URL, 123, "plain http:// refused (https only)")                             \
    X(OTA_ERR_CONFIG_REVERTED, 124, "pushed check URL failed; last working one restored")

typedef enum {
#define OTA_STATUS_ENUM_(name, value, desc) name = value,
    OTA_STATUS_LIST(OTA_STATUS_ENUM_)
#undef OTA_STATUS_ENUM_
} ota_status_t;

/* "OTA_ERR_IMAGE_DIGEST" — the enumerator's name, for logs. */
const char *ota_status_to_str(ota_status_t status);

/* "image_digest" / "ok" — the wire reason reported to the controller. */
const char *ota_status_to_reason(ota_status_t status);

/* Human description: "image SHA-256 differs from the manifest". */
const char *ota_status_describe(ota_status_t status);

#ifdef __cplusplus
}
#endif
