/*
 * ota_provisioning_keys.h — where the NVS provisioning image keeps each setting.
 *
 * One list for everything that reads the image: the firmware (firmware/main/
 * provisioning.c, on the ESP32-S3 and on the virtual ESP32-S3 alike).
 * The image is written by `csi-ota provision` (csi_ota.provision.PROVISION_FIELDS,
 * docs/provisioning.md); NVS keys are at most 15 characters.
 */
#pragma once

#define OTA_PROVISIONING_NAMESPACE "csi_ota"

#define OTA_PROVISIONING_KEY_UPDATE_URL "update_url"        /* string */
#define OTA_PROVISIONING_KEY_VERSION_URL "version_url"      /* string: version_check_url */
#define OTA_PROVISIONING_KEY_CHECK_INTERVAL "check_int_sec" /* u32: check_interval_sec */
#define OTA_PROVISIONING_KEY_AUTO_UPDATE "auto_update"      /* u8: auto_update_enabled */
#define OTA_PROVISIONING_KEY_DEVICE_ID "device_id"          /* string */
#define OTA_PROVISIONING_KEY_AUTH_TOKEN "auth_token"        /* string */
#define OTA_PROVISIONING_KEY_CA_CERT "ca_cert"              /* string: PEM */
#define OTA_PROVISIONING_KEY_WIFI_SSID "wifi_ssid"          /* string */
#define OTA_PROVISIONING_KEY_WIFI_PASSWORD "wifi_pass"      /* string */
#define OTA_PROVISIONING_KEY_MQTT_URI "mqtt_uri"            /* string */
#define OTA_PROVISIONING_KEY_DATA_URL "data_url"            /* string */
