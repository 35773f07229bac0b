#define _POSIX_C_SOURCE 200809L /* strnlen */
/* fuzz_http_head.c — response-head lines as libcurl hands them to a header callback
 * (ota_http_head_line: status line and "Name: value", not NUL-terminated), split on '\n'. */
#include <stdlib.h>
#include <string.h>

#include "ota_http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ota_port_http_response_t response;
    ota_http_head_reset(&response);
    size_t pos = 0;
    while (pos < size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - (data + pos)) + 1 : size - pos;
        char *line = malloc(len); /* exactly the line: no NUL to stop a runaway read */
        if (line == NULL) {
            return 0;
        }
        memcpy(line, data + pos, len);
        ota_http_head_line(&response, line, len);
        int status = 0;
        (void)ota_http_head_status_line(line, len, &status);
        free(line);
        pos += len;
    }
    /* Whatever was stored is a NUL-terminated string within its field. */
    if (strnlen(response.device_config, sizeof(response.device_config)) ==
            sizeof(response.device_config) ||
        strnlen(response.firmware_url, sizeof(response.firmware_url)) ==
            sizeof(response.firmware_url) ||
        strnlen(response.etag, sizeof(response.etag)) == sizeof(response.etag)) {
        abort();
    }
    return 0;
}
