/*
 * provisioning.h — the device's configuration: the NVS provisioning image
 * (namespace OTA_PROVISIONING_NAMESPACE), Kconfig defaults otherwise. Keys: docs/firmware.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"
#include "ota_agent.h"
#include "ota_provisioning_keys.h"

typedef struct {
    ota_deployment_config_t deployment; /* the seed's ota_deployment_config_t */
    char wifi_ssid[33];
    char wifi_password[65];
    char mqtt_uri[128];
    char data_url[128];
    char *ca_cert_pem; /* heap, NULL when none is provisioned */
} provisioning_t;

/* Fills `out` from NVS, falling back to Kconfig for every absent key.
 * Needs nvs_flash_init() and the Wi-Fi MAC (for the default device id). */
esp_err_t provisioning_load(provisioning_t *out);
