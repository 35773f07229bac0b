/*
 * esp_wifi.c — the virtual ESP32-S3's radio: a station that joins a virtual AP, and
 * synthetic CSI reports.
 *
 * Events, in ESP-IDF's order: esp_wifi_start() → WIFI_EVENT_STA_START; esp_wifi_connect()
 * → WIFI_EVENT_STA_CONNECTED, then IP_EVENT_STA_GOT_IP (192.168.4.2) 50 ms later. The AP
 * is heard at SIM_WIFI_RSSI_DBM.
 *
 * CSI: once esp_wifi_set_csi(true) is called with a callback, the "wifi" task delivers
 * SIM_CSI_RATE_HZ reports per second of virtual time while the station is connected: an
 * HT20 packet from the AP with 128 bytes (64 subcarriers of LLTF, int8 imaginary/real
 * pairs) shaped by a slowly moving multipath phase. At high --time-scale the radio reports
 * at most once per SIM_CSI_MIN_REAL_PERIOD_US of real time: at 3600x, 20 reports per virtual
 * second would be 72,000 a real second, the task would spin a core and an HTTP-publishing
 * board would send its controller a POST per frame (at 3600x: one per 18 s of virtual
 * time, 200 a real second). An image with the hardware-layer behaviour marker "fail_selftest"
 * stands for a board whose radio captures no CSI.
 */
#define _GNU_SOURCE
#include "esp_wifi.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "freertos/task.h"
#include "sim_board.h"
#include "sim_clock.h"

ESP_EVENT_DEFINE_BASE(WIFI_EVENT);
ESP_EVENT_DEFINE_BASE(IP_EVENT);

#define SIM_WIFI_RSSI_DBM (-55)
#define SIM_WIFI_NOISE_FLOOR_DBM (-92)
#define SIM_WIFI_CHANNEL 6
#define SIM_WIFI_DHCP_MS 50u
#define SIM_CSI_RATE_HZ 20u
#define SIM_CSI_MIN_REAL_PERIOD_US 5000.0
#define SIM_CSI_BYTES 128u

struct esp_netif_obj {
    int unused;
};

static const uint8_t SIM_AP_BSSID[6] = {0x02, 0x00, 0x5e, 0x00, 0x53, 0x01};
static const uint8_t SIM_STA_IP[4] = {192, 168, 4, 2};

static struct {
    pthread_mutex_t lock;
    bool initialised;
    bool started;
    bool connected;
    bool csi_enabled;
    wifi_config_t config;
    wifi_csi_cb_t csi_cb;
    void *csi_ctx;
    esp_netif_t netif;
    bool task_started;
} s_wifi = {.lock = PTHREAD_MUTEX_INITIALIZER};

esp_err_t esp_netif_init(void) {
    return ESP_OK;
}

esp_netif_t *esp_netif_create_default_wifi_sta(void) {
    return &s_wifi.netif;
}

esp_err_t esp_wifi_init(const wifi_init_config_t *config) {
    if (config == NULL || config->magic != WIFI_INIT_CONFIG_MAGIC) {
        return ESP_ERR_INVALID_ARG;
    }
    s_wifi.initialised = true;
    return ESP_OK;
}

esp_err_t esp_wifi_set_mode(wifi_mode_t mode) {
    if (!s_wifi.initialised) {
        return ESP_ERR_INVALID_STATE; /* ESP_ERR_WIFI_NOT_INIT */
    }
    return mode == WIFI_MODE_STA ? ESP_OK : ESP_ERR_NOT_SUPPORTED;
}

esp_err_t esp_wifi_set_config(wifi_interface_t interface, wifi_config_t *conf) {
    if (!s_wifi.initialised) {
        return ESP_ERR_INVALID_STATE;
    }
    if (interface != WIFI_IF_STA || conf == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    s_wifi.config = *conf;
    return ESP_OK;
}

static void wifi_csi_report(uint32_t seq) {
    static int8_t data[SIM_CSI_BYTES];
    double phase = (double)seq * 0.05;
    for (size_t i = 0; i < SIM_CSI_BYTES / 2; i++) {
        double k = (double)i - 32.0;
        double amplitude = 20.0 + 8.0 * cos(k * 0.2 + phase);
        data[2 * i] = (int8_t)lrint(amplitude * sin(k * 0.35 + phase));     /* imaginary */
        data[2 * i + 1] = (int8_t)lrint(amplitude * cos(k * 0.35 + phase)); /* real */
    }
    wifi_csi_info_t info;
    memset(&info, 0, sizeof(info));
    info.rx_ctrl.rssi = SIM_WIFI_RSSI_DBM + (int)(seq % 5) - 2;
    info.rx_ctrl.rate = 0xb;
    info.rx_ctrl.sig_mode = 1; /* HT */
    info.rx_ctrl.mcs = 7;
    info.rx_ctrl.cwb = 0;
    info.rx_ctrl.channel = SIM_WIFI_CHANNEL;
    info.rx_ctrl.secondary_channel = 0;
    info.rx_ctrl.noise_floor = SIM_WIFI_NOISE_FLOOR_DBM;
    info.rx_ctrl.timestamp = (uint32_t)sim_board_now_us();
    info.rx_ctrl.sig_len = 128;
    memcpy(info.mac, SIM_AP_BSSID, sizeof(info.mac));
    info.first_word_invalid = true; /* as on the ESP32-S3 */
    info.buf = data;
    info.len = SIM_CSI_BYTES;
    info.rx_seq = (uint16_t)(seq & 0xfff);
    s_wifi.csi_cb(s_wifi.csi_ctx, &info);
}

/* The radio task: DHCP after a connect, then CSI reports while connected. */
static void wifi_task(void *arg) {
    (void)arg;
    uint32_t seq = 0;
    const double min_period_ms = SIM_CSI_MIN_REAL_PERIOD_US * sim_clock_time_scale() / 1000.0;
    const uint32_t period_ms =
        (uint32_t)fmax(1000.0 / SIM_CSI_RATE_HZ, fmin(min_period_ms, 60000.0));
    for (;;) {
        vTaskDelay(pdMS_TO_TICKS(period_ms));
        pthread_mutex_lock(&s_wifi.lock);
        bool deliver = s_wifi.connected && s_wifi.csi_enabled && s_wifi.csi_cb != NULL &&
                       !sim_board_behaviour_is("fail_selftest");
        pthread_mutex_unlock(&s_wifi.lock);
        if (deliver) {
            wifi_csi_report(seq++);
        }
    }
}

esp_err_t esp_wifi_start(void) {
    if (!s_wifi.initialised) {
        return ESP_ERR_INVALID_STATE;
    }
    pthread_mutex_lock(&s_wifi.lock);
    bool start_task = !s_wifi.task_started;
    s_wifi.task_started = true;
    s_wifi.started = true;
    pthread_mutex_unlock(&s_wifi.lock);
    if (start_task && xTaskCreate(wifi_task, "wifi", 4096, NULL, 23, NULL) != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    return esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_START, NULL, 0, portMAX_DELAY);
}

esp_err_t esp_wifi_connect(void) {
    if (!s_wifi.started) {
        return ESP_ERR_INVALID_STATE; /* ESP_ERR_WIFI_NOT_STARTED */
    }
    wifi_event_sta_connected_t connected = {
        .channel = SIM_WIFI_CHANNEL, .authmode = s_wifi.config.sta.threshold.authmode, .aid = 1};
    size_t ssid_len = strnlen((const char *)s_wifi.config.sta.ssid, sizeof(connected.ssid));
    memcpy(connected.ssid, s_wifi.config.sta.ssid, ssid_len);
    connected.ssid_len = (uint8_t)ssid_len;
    memcpy(connected.bssid, SIM_AP_BSSID, sizeof(connected.bssid));
    esp_err_t err = esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_CONNECTED, &connected,
                                   sizeof(connected), portMAX_DELAY);
    if (err != ESP_OK) {
        return err;
    }
    vTaskDelay(pdMS_TO_TICKS(SIM_WIFI_DHCP_MS)); /* DHCP */
    ip_event_got_ip_t got_ip = {.esp_netif = &s_wifi.netif, .ip_changed = true};
    memcpy(&got_ip.ip_info.ip.addr, SIM_STA_IP, sizeof(SIM_STA_IP));
    pthread_mutex_lock(&s_wifi.lock);
    s_wifi.connected = true;
    pthread_mutex_unlock(&s_wifi.lock);
    return esp_event_post(IP_EVENT, IP_EVENT_STA_GOT_IP, &got_ip, sizeof(got_ip), portMAX_DELAY);
}

esp_err_t esp_wifi_sta_get_ap_info(wifi_ap_record_t *ap_info) {
    if (ap_info == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_wifi.lock);
    bool connected = s_wifi.connected;
    pthread_mutex_unlock(&s_wifi.lock);
    if (!connected) {
        return ESP_ERR_WIFI_BASE + 10; /* ESP_ERR_WIFI_NOT_CONNECT */
    }
    memset(ap_info, 0, sizeof(*ap_info));
    memcpy(ap_info->bssid, SIM_AP_BSSID, sizeof(ap_info->bssid));
    memcpy(ap_info->ssid, s_wifi.config.sta.ssid, sizeof(s_wifi.config.sta.ssid));
    ap_info->primary = SIM_WIFI_CHANNEL;
    ap_info->rssi = SIM_WIFI_RSSI_DBM;
    ap_info->authmode = s_wifi.config.sta.threshold.authmode;
    return ESP_OK;
}

esp_err_t esp_wifi_set_csi_config(const wifi_csi_config_t *config) {
    return config != NULL ? ESP_OK : ESP_ERR_INVALID_ARG;
}

esp_err_t esp_wifi_set_csi_rx_cb(wifi_csi_cb_t cb, void *ctx) {
    pthread_mutex_lock(&s_wifi.lock);
    s_wifi.csi_cb = cb;
    s_wifi.csi_ctx = ctx;
    pthread_mutex_unlock(&s_wifi.lock);
    return ESP_OK;
}

esp_err_t esp_wifi_set_csi(bool en) {
    if (!s_wifi.initialised) {
        return ESP_ERR_INVALID_STATE;
    }
    pthread_mutex_lock(&s_wifi.lock);
    s_wifi.csi_enabled = en;
    pthread_mutex_unlock(&s_wifi.lock);
    return ESP_OK;
}

bool sim_wifi_has_ip(void) {
    pthread_mutex_lock(&s_wifi.lock);
    bool connected = s_wifi.connected;
    pthread_mutex_unlock(&s_wifi.lock);
    return connected;
}
