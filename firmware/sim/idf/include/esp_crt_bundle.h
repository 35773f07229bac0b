/*
 * esp_crt_bundle.h — the certificate bundle (CONFIG_MBEDTLS_CERTIFICATE_BUNDLE). On the
 * virtual board the bundle is the CA file of its --config (ca_cert=), else the host's
 * default CA store: the roots a production image would carry.
 */
#pragma once

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

esp_err_t esp_crt_bundle_attach(void *conf);

#ifdef __cplusplus
}
#endif
