/* esp_efuse.h — the virtual ESP32-S3 has no flash encryption. */
#pragma once

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

bool esp_efuse_is_flash_encryption_enabled(void);

#ifdef __cplusplus
}
#endif
