/*
 * sim_port.h — the virtual ESP32-S3's half of ota_port.h that is not flash:
 * HTTP(S) over libcurl, SHA-256 / ECDSA P-256 over OpenSSL, a KV store in a
 * directory beside the flash file, clock, randomness, log and reboot.
 * The slot half (ota_port_running_slot … ota_port_update_*) is sim_flash's
 * sim_ota_ops.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *kv_dir;  /* directory of the KV store (created if missing) */
    const char *ca_cert; /* PEM CA bundle for https://, NULL/"" for the system default */
    double time_scale;   /* monotonic clock runs this many times faster than real time */
} sim_port_config_t;

/* Once per process. false (and a message on stderr) when kv_dir cannot be created. */
bool sim_port_init(const sim_port_config_t *config);

/* A PEM CA bundle held in memory (the provisioning image's ca_cert) for https://; it wins
 * over the config's ca_cert file. NULL or "" drops it. Copied. */
void sim_port_set_ca_cert_pem(const char *pem);

/* Called by ota_port_reboot() after the port has dropped its open handles; must not return. */
typedef void (*sim_port_reboot_fn)(void);
void sim_port_set_reboot_handler(sim_port_reboot_fn handler);

/* Starts a new boot: log timestamps count from here (like esp_log_timestamp). */
void sim_port_mark_boot(void);
/* Milliseconds since the last sim_port_mark_boot(), on the scaled clock. */
uint32_t sim_port_ms_since_boot(void);

/* Frees open HTTP requests and hash contexts (what a reset does to RAM). */
void sim_port_reset(void);
/* Releases libcurl at exit. */
void sim_port_shutdown(void);

/* Number of HTTP requests opened since start (for the sim's own stats). */
uint64_t sim_port_http_request_count(void);

#ifdef __cplusplus
}
#endif
