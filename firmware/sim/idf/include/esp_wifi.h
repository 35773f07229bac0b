/*
 * esp_wifi.h — the Wi-Fi station of the virtual ESP32-S3 and its CSI reports.
 *
 * The station joins a virtual AP (SSID from the firmware's configuration; any password):
 * esp_wifi_start() posts WIFI_EVENT_STA_START; esp_wifi_connect() posts
 * WIFI_EVENT_STA_CONNECTED and then IP_EVENT_STA_GOT_IP, the order ESP-IDF delivers them.
 * With CSI enabled, a synthetic source calls the rx callback CSI_OTA_SIM_CSI_RATE_HZ times
 * a second (virtual time) with a wifi_csi_info_t of ESP32-S3 layout (128 bytes of LLTF+HT-LTF,
 * int8 I/Q pairs). Types are those of components/esp_wifi/include for the ESP32-S3.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_event.h"
#include "esp_netif.h"

#ifdef __cplusplus
extern "C" {
#endif

ESP_EVENT_DECLARE_BASE(WIFI_EVENT);

typedef enum {
    WIFI_EVENT_WIFI_READY = 0,
    WIFI_EVENT_SCAN_DONE,
    WIFI_EVENT_STA_START,
    WIFI_EVENT_STA_STOP,
    WIFI_EVENT_STA_CONNECTED,
    WIFI_EVENT_STA_DISCONNECTED,
} wifi_event_t;

typedef enum {
    WIFI_MODE_NULL = 0,
    WIFI_MODE_STA,
    WIFI_MODE_AP,
    WIFI_MODE_APSTA,
} wifi_mode_t;

typedef enum {
    WIFI_IF_STA = 0,
    WIFI_IF_AP = 1,
} wifi_interface_t;

typedef enum {
    WIFI_AUTH_OPEN = 0,
    WIFI_AUTH_WEP,
    WIFI_AUTH_WPA_PSK,
    WIFI_AUTH_WPA2_PSK,
    WIFI_AUTH_WPA_WPA2_PSK,
    WIFI_AUTH_ENTERPRISE,
    WIFI_AUTH_WPA3_PSK,
} wifi_auth_mode_t;

typedef struct {
    int magic; /* WIFI_INIT_CONFIG_MAGIC */
} wifi_init_config_t;

#define WIFI_INIT_CONFIG_MAGIC 0x1F2F3F4F
#define WIFI_INIT_CONFIG_DEFAULT()                                                                 \
    { .magic = WIFI_INIT_CONFIG_MAGIC }

typedef struct {
    int8_t rssi;
    wifi_auth_mode_t authmode;
} wifi_scan_threshold_t;

typedef struct {
    uint8_t ssid[32];
    uint8_t password[64];
    bool bssid_set;
    uint8_t bssid[6];
    uint8_t channel;
    wifi_scan_threshold_t threshold;
} wifi_sta_config_t;

typedef union {
    wifi_sta_config_t sta;
} wifi_config_t;

typedef struct {
    uint8_t bssid[6];
    uint8_t ssid[33];
    uint8_t primary;
    int8_t rssi;
    wifi_auth_mode_t authmode;
} wifi_ap_record_t;

typedef struct {
    uint8_t ssid[32];
    uint8_t ssid_len;
    uint8_t bssid[6];
    uint8_t channel;
    wifi_auth_mode_t authmode;
    uint16_t aid;
} wifi_event_sta_connected_t;

typedef struct {
    uint8_t ssid[32];
    uint8_t ssid_len;
    uint8_t bssid[6];
    uint8_t reason;
    int8_t rssi;
} wifi_event_sta_disconnected_t;

/* ESP32-S3 layout (no CONFIG_SOC_WIFI_HE_SUPPORT). */
typedef struct {
    signed rssi : 8;
    unsigned rate : 5;
    unsigned : 1;
    unsigned sig_mode : 2;
    unsigned : 16;
    unsigned mcs : 7;
    unsigned cwb : 1;
    unsigned : 16;
    unsigned smoothing : 1;
    unsigned not_sounding : 1;
    unsigned : 1;
    unsigned aggregation : 1;
    unsigned stbc : 2;
    unsigned fec_coding : 1;
    unsigned sgi : 1;
    unsigned : 8;
    unsigned ampdu_cnt : 8;
    unsigned channel : 4;
    unsigned secondary_channel : 4;
    unsigned : 8;
    unsigned timestamp : 32;
    unsigned : 32;
    signed noise_floor : 8;
    unsigned : 24;
    unsigned : 32;
    unsigned : 31;
    unsigned ant : 1;
    unsigned : 32;
    unsigned : 32;
    unsigned : 32;
    unsigned sig_len : 12;
    unsigned : 12;
    unsigned rx_state : 8;
} wifi_pkt_rx_ctrl_t;

typedef struct {
    bool lltf_en;
    bool htltf_en;
    bool stbc_htltf2_en;
    bool ltf_merge_en;
    bool channel_filter_en;
    bool manu_scale;
    uint8_t shift;
    bool dump_ack_en;
} wifi_csi_config_t;

typedef struct wifi_csi_info_t {
    wifi_pkt_rx_ctrl_t rx_ctrl;
    uint8_t mac[6];
    uint8_t dmac[6];
    bool first_word_invalid;
    int8_t *buf;
    uint16_t len;
    uint8_t *hdr;
    uint8_t *payload;
    uint16_t payload_len;
    uint16_t rx_seq;
} wifi_csi_info_t;

typedef void (*wifi_csi_cb_t)(void *ctx, wifi_csi_info_t *data);

esp_err_t esp_wifi_init(const wifi_init_config_t *config);
esp_err_t esp_wifi_set_mode(wifi_mode_t mode);
esp_err_t esp_wifi_set_config(wifi_interface_t interface, wifi_config_t *conf);
esp_err_t esp_wifi_start(void);
esp_err_t esp_wifi_connect(void);
esp_err_t esp_wifi_sta_get_ap_info(wifi_ap_record_t *ap_info);
esp_err_t esp_wifi_set_csi_config(const wifi_csi_config_t *config);
esp_err_t esp_wifi_set_csi_rx_cb(wifi_csi_cb_t cb, void *ctx);
esp_err_t esp_wifi_set_csi(bool en);

#ifdef __cplusplus
}
#endif
