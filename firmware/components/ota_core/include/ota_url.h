/*
 * ota_url.h — URL helpers of the client: the controller origin, resolving
 * X-Firmware-Url, query strings, and the form-encoded X-Device-Config header.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* true for "http://host…" or "https://host…" with a non-empty host. */
bool ota_url_is_absolute_http(const char *url);

/* true for an absolute https:// URL, or an absolute http:// one when allow_plain_http. */
bool ota_url_scheme_allowed(const char *url, bool allow_plain_http);

/* true when both URLs are absolute and share scheme, host and port (exact text). */
bool ota_url_same_origin(const char *a, const char *b);

/* "https://host:port" of an absolute URL; false if not absolute or too long. */
bool ota_url_origin(const char *url, char *out, size_t cap);

/* ref absolute → ref; ref "/path" → origin(base) + ref; else false. */
bool ota_url_resolve(const char *base, const char *ref, char *out, size_t cap);

/* Appends "?key=value" or "&key=value" (value percent-encoded); false if it does not fit. */
bool ota_url_append_query(char *url, size_t cap, const char *key, const char *value);

/* Next "key=value" pair of a form-encoded string (percent and '+' decoded).
 * *cursor advances; false at the end or when a key/value does not fit (the
 * pair is skipped: *too_long is set and iteration continues on the next call). */
bool ota_url_form_next(const char **cursor, char *key, size_t key_cap, char *value,
                       size_t value_cap, bool *too_long);

#ifdef __cplusplus
}
#endif
