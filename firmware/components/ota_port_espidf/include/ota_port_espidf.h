/*
 * ota_port_espidf.h — settings of the ESP-IDF port that the app provides at start-up.
 *
 * The functions of ota_port.h need two things only the app knows: the CA that
 * signs the controller's TLS certificate (from the NVS provisioning image) and
 * that NVS is initialised. Call ota_port_espidf_init() once, after nvs_flash_init().
 */
#pragma once

#include "ota_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * ca_cert_pem: PEM text of the CA for https:// URLs (copied; NULL or "" for none:
 * then https:// uses the ESP-IDF certificate bundle when CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
 * is enabled, and is refused otherwise). Closes any kept-alive connection.
 */
ota_status_t ota_port_espidf_init(const char *ca_cert_pem);

#ifdef __cplusplus
}
#endif
