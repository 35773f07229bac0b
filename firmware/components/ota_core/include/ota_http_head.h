/*
 * ota_http_head.h — the response head of ota_port.h, filled from network bytes.
 *
 * Both ports store what the core reads (status, Content-Length, Content-Range,
 * ETag, X-Firmware-Url, X-Device-Config) through these functions, so the
 * refusal of over-long values (never truncation) is written once. Every input
 * is a (pointer, length) pair that need not be NUL-terminated.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "ota_port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Empty response: status 0, every length/range -1, strings "", flags false. */
void ota_http_head_reset(ota_port_http_response_t *response);

/* "HTTP/1.1 200 OK" (CRLF optional) -> 200. False unless the line is "HTTP/"
 * followed by a version, one or more spaces and exactly three digits. */
bool ota_http_head_status_line(const char *line, size_t len, int *status);

/* One header: name (without ':') and value (surrounding blanks and CRLF are
 * trimmed here). Unknown names are ignored. */
void ota_http_head_header(ota_port_http_response_t *response, const char *name, size_t name_len,
                          const char *value, size_t value_len);

/* One raw line as libcurl's header callback delivers it: a status line resets
 * the response (a redirect or 100 Continue starts a new head) and sets the
 * status; "Name: value" goes to ota_http_head_header(). False for a line that
 * is neither (ignored by the caller). */
bool ota_http_head_line(ota_port_http_response_t *response, const char *line, size_t len);

#ifdef __cplusplus
}
#endif
