/*
 * wifi_station.h — joins the configured access point and stays joined.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

/* Starts the station (esp_netif, default event loop, esp_wifi); reconnects forever. */
esp_err_t wifi_station_start(const char *ssid, const char *password);

/* True once the station has an IPv4 address; waits up to timeout_ms for it. */
bool wifi_station_wait_connected(uint32_t timeout_ms);

/* RSSI of the joined AP in dBm, 0 when not connected. */
int wifi_station_rssi(void);
