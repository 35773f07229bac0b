/*
 * nvs.c — components/nvs_flash's C API (ESP-IDF v6) on the virtual board's nvs partition.
 *
 * The storage engine (nvs_storage.c, nvs_pagemanager.c, nvs_page.c, nvs_page_load.c,
 * nvs_blob.c) keeps every value in ESP-IDF's page/entry format on the partition of the flash
 * file itself, with ESP-IDF's algorithms: each item write, bitmap update, page state change and
 * page erase is a real flash operation of the model, so --power-cut-at and the power-cut sweep
 * cut NVS writes where a board would lose power, and nvs_flash_init() repairs what the cut
 * left as NVS does. The provisioning image of `csi-ota provision` (esp-idf-nvs-partition-gen)
 * is read as it is, and what the firmware writes lands in the same pages.
 */
#include "nvs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "esp_partition.h"
#include "nvs_crypt.h"
#include "nvs_flash.h"
#include "nvs_storage.h"
#include "sim_board.h"

#define NVS_HANDLES_MAX 32

typedef struct {
    nvs_handle_t id; /* 0 = slot free */
    bool read_only;
    uint8_t ns_index;
} nvs_open_handle_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static nvs_storage_t s_storage;
static bool s_initialised;
static nvs_open_handle_t s_handles[NVS_HANDLES_MAX];
static nvs_handle_t s_next_handle = 1;

static esp_err_t nvs_part_read(void *ctx, uint32_t offset, void *buf, size_t len) {
    return esp_partition_read(ctx, offset, buf, len);
}

static esp_err_t nvs_part_write(void *ctx, uint32_t offset, const void *buf, size_t len) {
    return esp_partition_write(ctx, offset, buf, len);
}

static esp_err_t nvs_part_erase(void *ctx, uint32_t offset, size_t len) {
    return esp_partition_erase_range(ctx, offset, len);
}

static nvs_io_t s_io = {NULL, nvs_part_read, nvs_part_write, nvs_part_erase, NULL};
static nvs_crypt_t s_crypt;

static const esp_partition_t *nvs_partition(void) {
    return esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_NVS, "nvs");
}

esp_err_t nvs_flash_init(void) {
    pthread_mutex_lock(&s_lock);
    esp_err_t err = ESP_OK;
    if (!s_initialised) {
        const esp_partition_t *part = nvs_partition();
        if (part == NULL) {
            err = ESP_ERR_NVS_PART_NOT_FOUND;
        } else {
            s_io.ctx = (void *)part;
            /* The eFuse HMAC key of the board (config nvs_hmac_key): an encrypted partition,
             * its XTS keys derived as nvs_sec_provider does at nvs_flash_init. */
            uint8_t hmac_key[NVS_CRYPT_HMAC_KEY_BYTES];
            s_io.crypt = NULL;
            if (sim_board_nvs_hmac_key(hmac_key)) {
                if (!nvs_crypt_init(&s_crypt, hmac_key)) {
                    pthread_mutex_unlock(&s_lock);
                    return ESP_FAIL;
                }
                s_io.crypt = &s_crypt;
            }
            err = nvs_storage_init(&s_storage, &s_io, part->size / NVS_PAGE_BYTES);
            if (err == ESP_OK) {
                s_initialised = true;
            } else {
                nvs_storage_deinit(&s_storage);
            }
        }
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

static void nvs_deinit_locked(void) {
    if (s_initialised) {
        nvs_storage_deinit(&s_storage);
        s_initialised = false;
    }
    memset(s_handles, 0, sizeof(s_handles));
}

esp_err_t nvs_flash_deinit(void) {
    pthread_mutex_lock(&s_lock);
    esp_err_t err = s_initialised ? ESP_OK : ESP_ERR_NVS_NOT_INITIALIZED;
    nvs_deinit_locked();
    pthread_mutex_unlock(&s_lock);
    return err;
}

esp_err_t nvs_flash_erase(void) {
    const esp_partition_t *part = nvs_partition();
    if (part == NULL) {
        return ESP_ERR_NOT_FOUND;
    }
    pthread_mutex_lock(&s_lock);
    nvs_deinit_locked(); /* open handles are closed, as nvs_flash_erase_partition does */
    esp_err_t err = esp_partition_erase_range(part, 0, part->size);
    pthread_mutex_unlock(&s_lock);
    return err;
}

static bool nvs_name_ok(const char *name) {
    return name != NULL && name[0] != '\0' && strlen(name) <= NVS_KEY_NAME_MAX_SIZE - 1;
}

esp_err_t nvs_open(const char *namespace_name, nvs_open_mode_t open_mode,
                   nvs_handle_t *out_handle) {
    if (out_handle == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    if (!nvs_name_ok(namespace_name)) {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    pthread_mutex_lock(&s_lock);
    esp_err_t err = ESP_ERR_NVS_NOT_INITIALIZED;
    uint8_t ns = 0;
    if (s_initialised) {
        err =
            nvs_storage_open_namespace(&s_storage, namespace_name, open_mode == NVS_READWRITE, &ns);
    }
    if (err == ESP_OK) {
        err = ESP_ERR_NO_MEM;
        for (int i = 0; i < NVS_HANDLES_MAX; i++) {
            if (s_handles[i].id == 0) {
                s_handles[i].id = s_next_handle++;
                s_handles[i].read_only = open_mode == NVS_READONLY;
                s_handles[i].ns_index = ns;
                *out_handle = s_handles[i].id;
                err = ESP_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

void nvs_close(nvs_handle_t handle) {
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < NVS_HANDLES_MAX; i++) {
        if (handle != 0 && s_handles[i].id == handle) {
            s_handles[i].id = 0;
        }
    }
    pthread_mutex_unlock(&s_lock);
}

/* Under s_lock: the open handle, checking the key (NULL key: no key to check). */
static esp_err_t nvs_lookup(nvs_handle_t handle, const char *key, bool write,
                            nvs_open_handle_t **out) {
    nvs_open_handle_t *h = NULL;
    for (int i = 0; i < NVS_HANDLES_MAX && handle != 0; i++) {
        if (s_handles[i].id == handle) {
            h = &s_handles[i];
        }
    }
    if (h == NULL || !s_initialised) {
        return ESP_ERR_NVS_INVALID_HANDLE;
    }
    if (write && h->read_only) {
        return ESP_ERR_NVS_READ_ONLY;
    }
    if (key != NULL && key[0] == '\0') {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    if (key != NULL && strlen(key) > NVS_KEY_NAME_MAX_SIZE - 1) {
        return ESP_ERR_NVS_KEY_TOO_LONG;
    }
    *out = h;
    return ESP_OK;
}

static esp_err_t nvs_set_item(nvs_handle_t handle, const char *key, uint8_t type, const void *data,
                              size_t size) {
    if (key == NULL) {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    esp_err_t err = nvs_lookup(handle, key, true, &h);
    if (err == ESP_OK) {
        err = nvs_storage_write(&s_storage, h->ns_index, type, key, data, size, false);
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

static esp_err_t nvs_get_item(nvs_handle_t handle, const char *key, uint8_t type, void *out,
                              size_t size) {
    if (key == NULL) {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    if (out == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    esp_err_t err = nvs_lookup(handle, key, false, &h);
    if (err == ESP_OK) {
        err = nvs_storage_read(&s_storage, h->ns_index, type, key, out, size);
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

#define NVS_SCALAR(suffix, ctype, item_type)                                                       \
    esp_err_t nvs_set_##suffix(nvs_handle_t handle, const char *key, ctype value) {                \
        return nvs_set_item(handle, key, item_type, &value, sizeof(value));                        \
    }                                                                                              \
    esp_err_t nvs_get_##suffix(nvs_handle_t handle, const char *key, ctype *out_value) {           \
        return nvs_get_item(handle, key, item_type, out_value, sizeof(*out_value));                \
    }
NVS_SCALAR(u8, uint8_t, NVS_ITEM_U8)
NVS_SCALAR(i8, int8_t, NVS_ITEM_I8)
NVS_SCALAR(u16, uint16_t, NVS_ITEM_U16)
NVS_SCALAR(i16, int16_t, NVS_ITEM_I16)
NVS_SCALAR(u32, uint32_t, NVS_ITEM_U32)
NVS_SCALAR(i32, int32_t, NVS_ITEM_I32)
NVS_SCALAR(u64, uint64_t, NVS_ITEM_U64)
NVS_SCALAR(i64, int64_t, NVS_ITEM_I64)

esp_err_t nvs_set_str(nvs_handle_t handle, const char *key, const char *value) {
    if (value == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    return nvs_set_item(handle, key, NVS_ITEM_SZ, value, strlen(value) + 1);
}

esp_err_t nvs_set_blob(nvs_handle_t handle, const char *key, const void *value, size_t length) {
    if (value == NULL && length > 0) {
        return ESP_ERR_INVALID_ARG;
    }
    return nvs_set_item(handle, key, NVS_ITEM_BLOB, value == NULL ? "" : value, length);
}

/* nvs_get_str / nvs_get_blob: length in, the value's length out (NULL out_value: size query). */
static esp_err_t nvs_get_var(nvs_handle_t handle, const char *key, uint8_t type, void *out_value,
                             size_t *length) {
    if (key == NULL) {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    size_t size = 0;
    esp_err_t err = nvs_lookup(handle, key, false, &h);
    if (err == ESP_OK) {
        err = nvs_storage_data_size(&s_storage, h->ns_index, type, key, &size);
    }
    if (err == ESP_OK) {
        if (length == NULL) {
            err = ESP_ERR_NVS_INVALID_LENGTH;
        } else if (out_value == NULL) {
            *length = size;
        } else if (*length < size) {
            *length = size;
            err = ESP_ERR_NVS_INVALID_LENGTH;
        } else {
            *length = size;
            err = nvs_storage_read(&s_storage, h->ns_index, type, key, out_value, size);
        }
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

esp_err_t nvs_get_str(nvs_handle_t handle, const char *key, char *out_value, size_t *length) {
    return nvs_get_var(handle, key, NVS_ITEM_SZ, out_value, length);
}

esp_err_t nvs_get_blob(nvs_handle_t handle, const char *key, void *out_value, size_t *length) {
    return nvs_get_var(handle, key, NVS_ITEM_BLOB, out_value, length);
}

esp_err_t nvs_find_key(nvs_handle_t handle, const char *key, nvs_type_t *out_type) {
    if (key == NULL) {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    uint8_t type = 0;
    esp_err_t err = nvs_lookup(handle, key, false, &h);
    if (err == ESP_OK) {
        err = nvs_storage_find_key(&s_storage, h->ns_index, key, &type);
    }
    pthread_mutex_unlock(&s_lock);
    if (err == ESP_OK && out_type != NULL) {
        bool blob =
            type == NVS_ITEM_BLOB || type == NVS_ITEM_BLOB_DATA || type == NVS_ITEM_BLOB_IDX;
        *out_type = blob ? NVS_TYPE_BLOB : (nvs_type_t)type;
    }
    return err;
}

esp_err_t nvs_erase_key(nvs_handle_t handle, const char *key) {
    if (key == NULL) {
        return ESP_ERR_NVS_INVALID_NAME;
    }
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    esp_err_t err = nvs_lookup(handle, key, true, &h);
    if (err == ESP_OK) {
        err = nvs_storage_erase(&s_storage, h->ns_index, key, false);
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

esp_err_t nvs_erase_all(nvs_handle_t handle) {
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    esp_err_t err = nvs_lookup(handle, NULL, true, &h);
    if (err == ESP_OK) {
        err = nvs_storage_erase_namespace(&s_storage, h->ns_index, false);
    }
    pthread_mutex_unlock(&s_lock);
    return err;
}

esp_err_t nvs_commit(nvs_handle_t handle) {
    pthread_mutex_lock(&s_lock);
    nvs_open_handle_t *h = NULL;
    esp_err_t err = nvs_lookup(handle, NULL, false, &h); /* writes are on flash already */
    pthread_mutex_unlock(&s_lock);
    return err;
}
