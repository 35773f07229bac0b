/*
 * ota_port_espidf_priv.h — what the files of the ESP-IDF port share.
 */
#pragma once

#include "esp_err.h"
#include "ota_status.h"

#define OTA_PORT_ESPIDF_TAG "ota_port"

/* Maps the esp_err_t codes every port file meets; others become `fallback`. */
ota_status_t ota_port_espidf_status_from_esp_err(esp_err_t err, ota_status_t fallback);
