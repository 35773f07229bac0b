/* sim_port_internal.h — what the sim_port_*.c files share. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

void sim_crypto_reset(void);

void sim_http_init(const char *ca_cert);
void sim_http_reset(void);
void sim_http_shutdown(void);
uint64_t sim_http_request_count(void);

bool sim_kv_init(const char *dir);
