/*
 * esp_system.c — esp_app_get_description, esp_chip_info, esp_random, esp_read_mac,
 * esp_restart, heap figures and eFuse flags of the virtual ESP32-S3.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "esp_app_desc.h"
#include "esp_chip_info.h"
#include "esp_efuse.h"
#include "esp_mac.h"
#include "esp_random.h"
#include "esp_system.h"
#include "sim_board.h"

/* The virtual heap: 512 KiB of internal RAM less what the firmware would hold. */
#define SIM_HEAP_FREE_BYTES 180000u
#define SIM_HEAP_MIN_FREE_BYTES 150000u
/* Espressif's OUI; the last three bytes come from the board's state directory name. */
static const uint8_t SIM_MAC_OUI[3] = {0x7c, 0xdf, 0xa1};

const esp_app_desc_t *esp_app_get_description(void) {
    return sim_board_app_desc();
}

void esp_chip_info(esp_chip_info_t *out_info) {
    memset(out_info, 0, sizeof(*out_info));
    out_info->model = CHIP_ESP32S3;
    out_info->features = CHIP_FEATURE_WIFI_BGN | CHIP_FEATURE_BLE;
    out_info->revision = sim_board_chip_rev_full();
    out_info->cores = 2;
}

void esp_fill_random(void *buf, size_t len) {
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n <= 0) {
            continue;
        }
        p += n;
        len -= (size_t)n;
    }
}

uint32_t esp_random(void) {
    uint32_t value;
    esp_fill_random(&value, sizeof(value));
    return value;
}

esp_err_t esp_read_mac(uint8_t *mac, esp_mac_type_t type) {
    if (mac == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    /* FNV-1a of the state directory: one stable MAC per flash file. */
    uint32_t hash = 2166136261u;
    for (const char *p = sim_board_state_dir(); *p != '\0'; p++) {
        hash = (hash ^ (uint8_t)*p) * 16777619u;
    }
    memcpy(mac, SIM_MAC_OUI, sizeof(SIM_MAC_OUI));
    mac[3] = (uint8_t)(hash >> 16);
    mac[4] = (uint8_t)(hash >> 8);
    mac[5] = (uint8_t)(hash + (uint32_t)type); /* ESP-IDF derives the others by adding */
    return ESP_OK;
}

void esp_restart(void) {
    sim_board_restart();
}

uint32_t esp_get_free_heap_size(void) {
    return SIM_HEAP_FREE_BYTES;
}

uint32_t esp_get_minimum_free_heap_size(void) {
    return SIM_HEAP_MIN_FREE_BYTES;
}

bool esp_efuse_is_flash_encryption_enabled(void) {
    return false;
}
