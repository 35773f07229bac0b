/*
 * ota_mqtt_credentials.h — the device's MQTT password, derived from its API token.
 *
 * The broker must not hold a credential that also opens the HTTPS API (issue 12 M2):
 * the MQTT password is HMAC-SHA256(key = device token, message = OTA_MQTT_PASSWORD_LABEL)
 * as 64 lowercase hex characters. The controller computes the same value
 * (csi_ota.controller.tokens.mqtt_password_for) and gives Mosquitto only its PBKDF2 hash;
 * whoever learns the MQTT password cannot compute the token from it.
 */
#pragma once

#include <stddef.h>

#include "ota_status.h"

#define OTA_MQTT_PASSWORD_LABEL "csi-ota mqtt password v1"
#define OTA_MQTT_PASSWORD_HEX_CHARS 64
#define OTA_MQTT_PASSWORD_BUF_BYTES (OTA_MQTT_PASSWORD_HEX_CHARS + 1)

/* Writes the NUL-terminated MQTT password for `token` into out (out_len >=
 * OTA_MQTT_PASSWORD_BUF_BYTES). OTA_ERR_INVALID_ARG for a NULL/empty token or a short buffer; the
 * port's status if hashing fails. */
ota_status_t ota_mqtt_password(const char *token, char *out, size_t out_len);
