/* fuzz_espidf_http_util.c — the ESP-IDF port's own header handling: Content-Range,
 * origins and redirect Location resolution (ota_port_espidf_http_util.c, plain C). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "ota_port_espidf_http_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    if (text == NULL) {
        return 0;
    }
    ota_port_espidf_http_util_range_t range;
    (void)ota_port_espidf_http_util_content_range(text, &range);
    char out[512];
    (void)ota_port_espidf_http_util_origin(text, out, sizeof(out));
    (void)ota_port_espidf_http_util_is_https(text);
    (void)ota_port_espidf_http_util_resolve("https://ota.local:8080/api/ota/firmware/ab", text, out,
                                            sizeof(out));
    (void)ota_port_espidf_http_util_resolve(text, "/api/ota/status", out, sizeof(out));
    free(text);
    return 0;
}
