/* ota_mqtt_credentials.c — HMAC-SHA256 (RFC 2104) of the MQTT label, keyed with the device token.
 */
#include "ota_mqtt_credentials.h"

#include <stdint.h>
#include <string.h>

#include "ota_port.h"

#define OTA_MQTT_CREDENTIALS_BLOCK_BYTES 64
#define OTA_MQTT_CREDENTIALS_DIGEST_BYTES 32

/* SHA-256 of a ‖ b (b may be NULL). */
static ota_status_t ota_mqtt_credentials_sha256(const uint8_t *a, size_t a_len, const uint8_t *b,
                                                size_t b_len,
                                                uint8_t digest[OTA_MQTT_CREDENTIALS_DIGEST_BYTES]) {
    ota_port_sha256_t *sha = NULL;
    ota_status_t status = ota_port_sha256_begin(&sha);
    if (status != OTA_OK) {
        return status;
    }
    status = ota_port_sha256_update(sha, a, a_len);
    if (status == OTA_OK && b != NULL) {
        status = ota_port_sha256_update(sha, b, b_len);
    }
    if (status != OTA_OK) {
        ota_port_sha256_discard(sha);
        return status;
    }
    return ota_port_sha256_finish(sha, digest);
}

ota_status_t ota_mqtt_password(const char *token, char *out, size_t out_len) {
    if (token == NULL || token[0] == '\0' || out == NULL || out_len < OTA_MQTT_PASSWORD_BUF_BYTES) {
        return OTA_ERR_INVALID_ARG;
    }
    uint8_t key[OTA_MQTT_CREDENTIALS_BLOCK_BYTES] = {0};
    size_t token_len = strlen(token);
    ota_status_t status = OTA_OK;
    if (token_len > sizeof(key)) { /* keys longer than a block are hashed first */
        status = ota_mqtt_credentials_sha256((const uint8_t *)token, token_len, NULL, 0, key);
    } else {
        memcpy(key, token, token_len);
    }
    uint8_t pad[OTA_MQTT_CREDENTIALS_BLOCK_BYTES];
    uint8_t inner[OTA_MQTT_CREDENTIALS_DIGEST_BYTES];
    uint8_t mac[OTA_MQTT_CREDENTIALS_DIGEST_BYTES];
    const char *label = OTA_MQTT_PASSWORD_LABEL;
    if (status == OTA_OK) {
        for (size_t i = 0; i < sizeof(pad); i++) {
            pad[i] = (uint8_t)(key[i] ^ 0x36u);
        }
        status = ota_mqtt_credentials_sha256(pad, sizeof(pad), (const uint8_t *)label,
                                             strlen(label), inner);
    }
    if (status == OTA_OK) {
        for (size_t i = 0; i < sizeof(pad); i++) {
            pad[i] = (uint8_t)(key[i] ^ 0x5cu);
        }
        status = ota_mqtt_credentials_sha256(pad, sizeof(pad), inner, sizeof(inner), mac);
    }
    memset(key, 0, sizeof(key));
    memset(pad, 0, sizeof(pad));
    if (status != OTA_OK) {
        return status;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(mac); i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 0x0fu];
    }
    out[OTA_MQTT_PASSWORD_HEX_CHARS] = '\0';
    return OTA_OK;
}
