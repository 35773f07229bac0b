/* fuzz_support.h — helpers of the ota_core fuzz targets (fuzz_port_stub.c). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Every ota_port_kv_get() returns these bytes (NULL: not found) until the next call. */
void fuzz_port_kv_load(const uint8_t *data, size_t len);

/* A NUL-terminated heap copy (free() it), for parsers that take C strings. */
char *fuzz_strndup(const uint8_t *data, size_t len);
