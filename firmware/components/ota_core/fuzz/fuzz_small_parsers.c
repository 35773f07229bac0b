/* fuzz_small_parsers.c — the other parsers of network bytes: the status-report ack
 * (ota_json_find_u32), the downloaded image's header (ota_image_header_parse) and the
 * versions a manifest or the controller names (ota_version_parse). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "ota_image_header.h"
#include "ota_json.h"
#include "ota_version.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    uint32_t ack = 0;
    (void)ota_json_find_u32(copy, size, "ack_seq", &ack);
    ota_image_header_t header;
    (void)ota_image_header_parse((const uint8_t *)copy, size, &header);
    free(copy);
    char *text = fuzz_strndup(data, size);
    if (text != NULL) {
        ota_version_t a;
        ota_version_t b;
        if (ota_version_parse(text, &a) && ota_version_parse("1.0.0-rc.1", &b)) {
            (void)ota_version_compare(&a, &b);
        }
        free(text);
    }
    return 0;
}
