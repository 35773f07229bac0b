/*
 * ota_agent.h — the OTA update state machine of csi-ota, written once and run
 * unchanged on the ESP32-S3 and on the virtual ESP32-S3, both through the ESP-IDF
 * port (firmware/components/ota_port_espidf). Everything platform-specific goes
 * through ota_port.h.
 *
 * Typical use (one task / one thread owns the client):
 *
 *     ota_agent_config_t config;
 *     ota_agent_config_defaults(&config);
 *     ... fill config.deployment, trusted keys, project name, self-test hooks ...
 *     ota_agent_t client;
 *     ota_agent_init(&client, &config);
 *     ota_agent_on_boot(&client);          // confirm or roll back a fresh update
 *     for (;;) {
 *         ota_agent_poll(&client, ota_port_monotonic_ms());
 *         ... sleep until ota_agent_next_check_ms(&client) or a console command ...
 *     }
 *
 * The client may call ota_port_reboot() (after a downloaded update, or through
 * ota_port_mark_invalid_and_reboot() after a failed self-test); those calls do
 * not return. Behaviour, persisted keys and log lines: docs/architecture.md and
 * docs/log-lines.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_port.h"
#include "ota_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The seed's configuration, field for field (and the names X-Device-Config uses). */
typedef struct {
    char update_url[256];        /* firmware URL used when the check sends no X-Firmware-Url */
    char version_check_url[256]; /* GET …/api/ota/version — returns the signed manifest */
    uint32_t check_interval_sec; /* periodic check interval (jittered ±10 %) */
    bool auto_update_enabled;    /* periodic checks run only when true */
    char device_id[32];
    char auth_token[128]; /* sent as Authorization: Bearer … */
} ota_deployment_config_t;

#define OTA_AGENT_MAX_TRUSTED_KEYS 4
#define OTA_AGENT_MAX_SELFTESTS 8
#define OTA_AGENT_KEY_ID_BYTES 8
#define OTA_AGENT_PUBLIC_KEY_BYTES 65

/* Defaults (the seed's UPDATE_RETRY_COUNT=3 and friends). */
#define OTA_AGENT_DEFAULT_RETRY_COUNT 3
#define OTA_AGENT_DEFAULT_BACKOFF_INITIAL_MS 2000
#define OTA_AGENT_DEFAULT_BACKOFF_MAX_MS 300000
#define OTA_AGENT_DEFAULT_HTTP_TIMEOUT_MS 15000
#define OTA_AGENT_DEFAULT_CHUNK_BYTES 4096
#define OTA_AGENT_DEFAULT_PERSIST_INTERVAL_BYTES 65536
#define OTA_AGENT_DEFAULT_SELFTEST_TIMEOUT_MS 30000

/* A release-signing public key built into the firmware. */
typedef struct {
    uint8_t key_id[OTA_AGENT_KEY_ID_BYTES];  /* first 8 bytes of SHA-256(raw) */
    uint8_t raw[OTA_AGENT_PUBLIC_KEY_BYTES]; /* uncompressed point 04||X||Y */
} ota_trusted_key_t;

/* One post-update self-test (Wi-Fi up, controller reachable, CSI frames
 * arriving, heartbeat acknowledged). run() returns OTA_OK when healthy and
 * must give up after timeout_ms. */
typedef struct {
    const char *name;
    ota_status_t (*run)(void *ctx, uint32_t timeout_ms);
    uint32_t timeout_ms;
} ota_selftest_hook_t;

typedef struct {
    ota_deployment_config_t deployment;
    ota_trusted_key_t trusted_keys[OTA_AGENT_MAX_TRUSTED_KEYS];
    size_t trusted_key_count;
    char project_name[32];           /* must equal the manifest's `project` */
    uint32_t retry_count;            /* download attempts per check after the first */
    uint32_t backoff_initial_ms;     /* capped exponential backoff: initial·2^k … */
    uint32_t backoff_max_ms;         /* … never above this */
    uint32_t http_timeout_ms;        /* connect and per-read inactivity timeout */
    uint32_t chunk_size_bytes;       /* HTTP read / flash write unit */
    uint32_t persist_interval_bytes; /* download state saved every N bytes */
    ota_selftest_hook_t selftests[OTA_AGENT_MAX_SELFTESTS];
    size_t selftest_count;
    void *selftest_ctx; /* passed to every hook */
    /* Test builds only (CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP): accept http:// URLs. Otherwise
     * every request, pushed URL and `ota url` must be https:// (OTA_ERR_INSECURE_URL). */
    bool allow_plain_http;
} ota_agent_config_t;

/* What the client is doing; names appear in ota_agent_status_json(). */
typedef enum {
    OTA_AGENT_IDLE = 0,
    OTA_AGENT_CHECKING,
    OTA_AGENT_DOWNLOADING,
    OTA_AGENT_VERIFYING,
    OTA_AGENT_SELFTEST,
} ota_agent_phase_t;

/* The last status report (persisted, repeated until the controller acks it). */
typedef struct {
    uint32_t seq; /* 0: nothing reported yet */
    char state[16];
    char reason[32];
    char version[32];
    char target_version[32];
    char target_sha256[65];
    uint32_t manifest_sequence;
    uint32_t bytes_written;
    bool acked;
} ota_agent_report_t;

/* Client state. Fields are private to ota_agent*.c: use the functions below. */
typedef struct {
    ota_agent_config_t config; /* deployment holds the effective (pushed/persisted) values */
    ota_agent_phase_t phase;
    ota_agent_report_t report;
    uint32_t highest_sequence; /* highest manifest sequence accepted (replay protection) */
    uint64_t next_check_ms;
    uint32_t consecutive_failures;
    ota_status_t last_check_status;
    uint32_t download_bytes_written; /* progress of the current/last download */
    uint32_t download_size_bytes;
    char running_version[32];
    uint32_t running_secure_version;
    bool check_requested;
    bool initialised;
    uint32_t config_override_mask; /* deployment fields changed by push / `ota url` (persisted) */
    char offered_version[32];      /* last manifest seen by a check ("" if none) */
    uint32_t offered_sequence;
    /* A pushed version_check_url/update_url on trial: the last working ones are kept
     * in the KV store (OTA_KV_CONFIG_PREV) until a check with the new ones works. */
    bool config_on_trial;
} ota_agent_t;

/* Fills defaults (no URLs, no keys, no hooks). */
void ota_agent_config_defaults(ota_agent_config_t *config);

/* Loads persisted state (report seq, accepted sequence, pushed config) and the
 * running app's description. OTA_ERR_CONFIG for an unusable config. */
ota_status_t ota_agent_init(ota_agent_t *client, const ota_agent_config_t *config);

/* Call once per boot, before the first poll. If the running image is the boot
 * image and PENDING_VERIFY: run the self-tests, then mark valid (success) or mark
 * invalid and reboot (does not return). If the device fell back from an update
 * (bootloader abandoned it), report `rolled_back` — never mark valid then. */
ota_status_t ota_agent_on_boot(ota_agent_t *client);

/* One version check now (and the update it leads to). May reboot. Returns
 * OTA_OK when up to date or after a handled rejection, else the failure. */
ota_status_t ota_agent_check_now(ota_agent_t *client);

/* Runs a check when one is due (periodic while auto_update_enabled, or
 * requested). Returns the check's status, or OTA_OK when nothing was due. */
ota_status_t ota_agent_poll(ota_agent_t *client, uint64_t now_ms);

/* Monotonic time (ms) of the next due check; UINT64_MAX when none is scheduled. */
uint64_t ota_agent_next_check_ms(const ota_agent_t *client);

/* Ask for a check at the next poll (a controller hint). */
void ota_agent_request_check(ota_agent_t *client);

/* Console `ota url <manifest-url>`: sets and persists version_check_url. */
ota_status_t ota_agent_set_manifest_url(ota_agent_t *client, const char *url);

/* The effective deployment configuration. */
const ota_deployment_config_t *ota_agent_deployment(const ota_agent_t *client);

/* Console `ota status`: one JSON object, NUL-terminated. Returns the length it
 * needs (like snprintf); output is truncated when cap is too small. */
size_t ota_agent_status_json(const ota_agent_t *client, char *buf, size_t cap);

#ifdef OTA_AGENT_TEST_HOOKS
/* Test builds: the next self-test (persisted, survives reboot) fails. */
ota_status_t ota_agent_fail_next_selftest(ota_agent_t *client);
#endif

#ifdef __cplusplus
}
#endif
