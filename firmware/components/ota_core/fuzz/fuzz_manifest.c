/* fuzz_manifest.c — the signed manifest of a version-check answer (ota_manifest_verify). */
#include <stdlib.h>
#include <string.h>

#include "ota_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-size heap copy: ASan sees any read past the body the port delivered. */
    char *text = malloc(size > 0 ? size : 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    ota_trusted_key_t key;
    memset(&key, 0, sizeof(key));
    ota_manifest_t manifest;
    if (ota_manifest_parse(text, size, &manifest) == OTA_OK) {
        memcpy(key.key_id, manifest.key_id, sizeof(key.key_id)); /* reach the signature check */
    }
    (void)ota_manifest_verify(text, size, &key, 1, &manifest);
    free(text);
    return 0;
}
