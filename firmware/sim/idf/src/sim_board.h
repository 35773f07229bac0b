/*
 * sim_board.h — what the host implementation of the ESP-IDF APIs (src/) asks of the
 * virtual board (board/sim_board.c): its clock, its flash and boot result, its
 * configuration (the values the image was built with), and its reset.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "esp_app_desc.h"
#include "sim_bootloader.h"
#include "sim_flash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- clock -- */
/* Microseconds since this boot on the virtual clock (sim_clock.h: --time-scale times real
 * time, held back while a task that is due has not run). Timed waits use sim_clock.h. */
int64_t sim_board_now_us(void);

/* ---------------------------------------------------------- the board -- */
sim_flash_t *sim_board_flash(void);
/* The image the bootloader model started (partition, header, app description, marker). */
const sim_boot_result_t *sim_board_boot(void);
const esp_app_desc_t *sim_board_app_desc(void);
/* The image's behaviour marker is this ("normal", "fail_selftest", "crash_at_boot"). */
bool sim_board_behaviour_is(const char *marker);
/* Chip revision (major * 100 + minor) of --chip-rev-full. */
uint16_t sim_board_chip_rev_full(void);
/* Directory beside the flash file for the board's state that is not on flash. */
const char *sim_board_state_dir(void);
/* CA file of the certificate bundle (config ca_cert), "" for the host's default store. */
const char *sim_board_bundle_ca_file(void);

/* The eFuse HMAC key of NVS encryption (config nvs_hmac_key, 64 hex digits): false when
 * the board has none (the nvs partition is in clear). */
bool sim_board_nvs_hmac_key(uint8_t key[32]);

/* The station holds an IP address (esp_wifi.c): the network is reachable only then. */
bool sim_wifi_has_ip(void);

/* esp_console.c: lets a running console command finish and keeps an unfinished input
 * line for the next boot (called by sim_board_restart). */
void sim_console_before_restart(void);

/* Restarts the board: flushes stdout, ends every task (the process re-executes itself
 * with the same flash, arguments, boot count and flash operation counter). */
void sim_board_restart(void) __attribute__((noreturn));
/* Powers the board off (console `exit`, end of stdin): exit status `code`. */
void sim_board_power_off(int code) __attribute__((noreturn));

/* The board's power-on: arguments, configuration, bootloader model, then the firmware's
 * app_main (app_main_fn). Never
 * returns except with an exit code (usage, no bootable app, boot loop). */
int sim_board_run(int argc, char **argv, void (*app_main_fn)(void));

/* Serialises whole lines on stdout between tasks. */
void sim_board_stdout_lock(void);
void sim_board_stdout_unlock(void);

#ifdef __cplusplus
}
#endif
