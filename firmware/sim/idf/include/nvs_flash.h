/* nvs_flash.h — nvs_flash_init() / nvs_flash_erase() / nvs_flash_deinit() on the board's nvs
 * partition. */
#pragma once

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

esp_err_t nvs_flash_init(void);
esp_err_t nvs_flash_erase(void);
esp_err_t nvs_flash_deinit(void);

#ifdef __cplusplus
}
#endif
