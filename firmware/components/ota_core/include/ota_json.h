/*
 * ota_json.h — a tiny JSON object writer (status reports, `ota status`) and
 * the one reader the client needs ("ack_seq" in the controller's answer).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *buf;
    size_t cap;
    size_t len; /* length the full output needs (may exceed cap - 1: truncated) */
    bool first;
} ota_json_t;

void ota_json_begin(ota_json_t *json, char *buf, size_t cap); /* writes "{" */
void ota_json_string(ota_json_t *json, const char *key, const char *value);
void ota_json_u64(ota_json_t *json, const char *key, uint64_t value);
void ota_json_i64(ota_json_t *json, const char *key, int64_t value);
void ota_json_bool(ota_json_t *json, const char *key, bool value);
/* key followed by an already-formatted JSON value. */
void ota_json_raw(ota_json_t *json, const char *key, const char *raw_value);
/* Writes "}" and returns the length needed (like snprintf). */
size_t ota_json_end(ota_json_t *json);

/* Finds "key": <unsigned integer> in a flat JSON object; false if absent. */
bool ota_json_find_u32(const char *text, size_t len, const char *key, uint32_t *out);

#ifdef __cplusplus
}
#endif
