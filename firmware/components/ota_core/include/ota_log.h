/*
 * ota_log.h — the core's log macros. Every line goes through ota_port_log(),
 * which prints it ESP-IDF style ("I (1234) ota: message"). Lines that tests
 * match are listed in docs/log-lines.md: change them only together.
 */
#pragma once

#include "ota_port.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_LOG_TAG "ota"

#if defined(__GNUC__)
#define OTA_LOG_PRINTF_FORMAT_ __attribute__((format(printf, 3, 4)))
#else
#define OTA_LOG_PRINTF_FORMAT_
#endif

/* Formats one line and hands it to ota_port_log(). */
void ota_log_write(ota_log_level_t level, const char *tag, const char *fmt,
                   ...) OTA_LOG_PRINTF_FORMAT_;

#define OTA_LOGE(...) ota_log_write(OTA_LOG_ERROR, OTA_LOG_TAG, __VA_ARGS__)
#define OTA_LOGW(...) ota_log_write(OTA_LOG_WARN, OTA_LOG_TAG, __VA_ARGS__)
#define OTA_LOGI(...) ota_log_write(OTA_LOG_INFO, OTA_LOG_TAG, __VA_ARGS__)
#define OTA_LOGD(...) ota_log_write(OTA_LOG_DEBUG, OTA_LOG_TAG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
