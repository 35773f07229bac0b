/*
 * nvs.c — components/nvs_flash's API on the virtual board.
 *
 * Reads come from the nvs partition of the flash file in ESP-IDF's page/entry format
 * (firmware/sim/flash/src/sim_nvs.c: the provisioning image of `csi-ota provision`),
 * read once by nvs_flash_init() as NVS does at init. Values the firmware writes (the OTA
 * client's blobs in namespace "csi_ota") are kept beside the flash file, one file per key
 * in <flash>.kv/, and shadow the partition's value of the same key. Each set and erase is
 * one numbered flash operation (sim_flash_count_op), so --power-cut-at and the power-cut
 * sweep cut NVS writes as well; a write is atomic (a cut keeps the old or the new value),
 * as NVS guarantees. Writing into the partition's own pages is not modelled yet
 * (docs/sim.md).
 */
#define _POSIX_C_SOURCE 200809L
#include "nvs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esp_partition.h"
#include "nvs_flash.h"
#include "sim_board.h"
#include "sim_flash.h"
#include "sim_nvs.h"

#define NVS_HANDLES_MAX 8
#define NVS_NAMESPACE_MAX_CHARS 15
#define NVS_KV_NAMESPACE "csi_ota" /* the namespace whose writes the board keeps */
#define NVS_PATH_MAX 1024
#define NVS_STR_MAX_BYTES 4000
#define NVS_VALUE_MAX_BYTES 8000 /* blob limit of the kept values */

typedef struct {
    bool open;
    bool writable;
    char ns[NVS_NAMESPACE_MAX_CHARS + 1];
} nvs_handle_entry_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *s_partition; /* the nvs partition as read at nvs_flash_init */
static size_t s_partition_len;
static bool s_initialised;
static nvs_handle_entry_t s_handles[NVS_HANDLES_MAX]; /* handle h is s_handles[h - 1] */

esp_err_t nvs_flash_init(void) {
    const esp_partition_t *part =
        esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_NVS, NULL);
    if (part == NULL) {
        return ESP_ERR_NOT_FOUND;
    }
    uint8_t *bytes = malloc(part->size);
    if (bytes == NULL) {
        return ESP_ERR_NO_MEM;
    }
    esp_err_t err = esp_partition_read(part, 0, bytes, part->size);
    if (err != ESP_OK) {
        free(bytes);
        return err;
    }
    char dir[NVS_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", sim_board_state_dir());
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        free(bytes);
        return ESP_FAIL;
    }
    pthread_mutex_lock(&s_lock);
    free(s_partition);
    s_partition = bytes;
    s_partition_len = part->size;
    s_initialised = true;
    pthread_mutex_unlock(&s_lock);
    return ESP_OK;
}

esp_err_t nvs_flash_erase(void) {
    return ESP_ERR_NOT_SUPPORTED;
}

static bool nvs_name_ok(const char *name) {
    return name != NULL && name[0] != '\0' && strlen(name) <= NVS_NAMESPACE_MAX_CHARS;
}

/* <state dir>/<key> for a key of the kept namespace; false otherwise. */
static bool nvs_kv_path(const char *ns, const char *key, char *out, size_t cap) {
    if (strcmp(ns, NVS_KV_NAMESPACE) != 0) {
        return false;
    }
    for (const char *p = key; *p != '\0'; p++) {
        if (*p == '/' || *p == '.') {
            return false;
        }
    }
    return snprintf(out, cap, "%s/%s", sim_board_state_dir(), key) < (int)cap;
}

static bool nvs_kv_any(void) {
    DIR *dir = opendir(sim_board_state_dir());
    if (dir == NULL) {
        return false;
    }
    bool any = false;
    for (struct dirent *e = readdir(dir); e != NULL && !any; e = readdir(dir)) {
        any = e->d_name[0] != '.' && strstr(e->d_name, ".tmp") == NULL;
    }
    closedir(dir);
    return any;
}

esp_err_t nvs_open(const char *namespace_name, nvs_open_mode_t open_mode,
                   nvs_handle_t *out_handle) {
    if (!s_initialised) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    if (!nvs_name_ok(namespace_name) || out_handle == NULL) {
        return nvs_name_ok(namespace_name) ? ESP_ERR_INVALID_ARG : ESP_ERR_NVS_INVALID_NAME;
    }
    if (open_mode == NVS_READONLY &&
        !sim_nvs_namespace_exists(s_partition, s_partition_len, namespace_name) &&
        !(strcmp(namespace_name, NVS_KV_NAMESPACE) == 0 && nvs_kv_any())) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < NVS_HANDLES_MAX; i++) {
        if (!s_handles[i].open) {
            s_handles[i].open = true;
            s_handles[i].writable = open_mode == NVS_READWRITE;
            snprintf(s_handles[i].ns, sizeof(s_handles[i].ns), "%s", namespace_name);
            pthread_mutex_unlock(&s_lock);
            *out_handle = (nvs_handle_t)(i + 1);
            return ESP_OK;
        }
    }
    pthread_mutex_unlock(&s_lock);
    return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
}

void nvs_close(nvs_handle_t handle) {
    if (handle >= 1 && handle <= NVS_HANDLES_MAX) {
        pthread_mutex_lock(&s_lock);
        s_handles[handle - 1].open = false;
        pthread_mutex_unlock(&s_lock);
    }
}

static const nvs_handle_entry_t *nvs_entry(nvs_handle_t handle, const char *key, esp_err_t *err) {
    if (handle < 1 || handle > NVS_HANDLES_MAX || !s_handles[handle - 1].open) {
        *err = ESP_ERR_NVS_INVALID_HANDLE;
        return NULL;
    }
    if (key == NULL || key[0] == '\0') {
        *err = ESP_ERR_NVS_INVALID_NAME;
        return NULL;
    }
    if (strlen(key) > NVS_KEY_NAME_MAX_SIZE - 1) {
        *err = ESP_ERR_NVS_KEY_TOO_LONG;
        return NULL;
    }
    *err = ESP_OK;
    return &s_handles[handle - 1];
}

static esp_err_t nvs_err(sim_nvs_result_t r) {
    switch (r) {
    case SIM_NVS_OK:
        return ESP_OK;
    case SIM_NVS_NOT_FOUND:
        return ESP_ERR_NVS_NOT_FOUND;
    case SIM_NVS_TYPE_MISMATCH:
        return ESP_ERR_NVS_TYPE_MISMATCH;
    case SIM_NVS_TOO_LONG:
        return ESP_ERR_NVS_INVALID_LENGTH;
    default:
        return ESP_ERR_INVALID_ARG;
    }
}

/* Reads a kept value: ESP_OK (*len = its length; copied when buf fits), or NOT_FOUND. */
static esp_err_t nvs_kv_read(const char *ns, const char *key, void *buf, size_t *len) {
    char path[NVS_PATH_MAX];
    if (!nvs_kv_path(ns, key, path, sizeof(path))) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    uint8_t *value = malloc(NVS_VALUE_MAX_BYTES);
    size_t n = value != NULL ? fread(value, 1, NVS_VALUE_MAX_BYTES, f) : 0;
    fclose(f);
    esp_err_t err = value != NULL ? ESP_OK : ESP_ERR_NO_MEM;
    if (err == ESP_OK && buf != NULL) {
        if (n > *len) {
            err = ESP_ERR_NVS_INVALID_LENGTH;
        } else {
            memcpy(buf, value, n);
        }
    }
    free(value);
    *len = n;
    return err;
}

esp_err_t nvs_find_key(nvs_handle_t handle, const char *key, nvs_type_t *out_type) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL) {
        return err;
    }
    size_t len = 0;
    if (nvs_kv_read(h->ns, key, NULL, &len) == ESP_OK) {
        if (out_type != NULL) {
            *out_type = NVS_TYPE_BLOB;
        }
        return ESP_OK;
    }
    uint8_t type = 0;
    err = nvs_err(sim_nvs_get_type(s_partition, s_partition_len, h->ns, key, &type));
    if (err == ESP_OK && out_type != NULL) {
        *out_type = type == 0x48 ? NVS_TYPE_BLOB : (nvs_type_t)type; /* BLOB_IDX → blob */
    }
    return err;
}

esp_err_t nvs_get_u8(nvs_handle_t handle, const char *key, uint8_t *out_value) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL || out_value == NULL) {
        return h == NULL ? err : ESP_ERR_INVALID_ARG;
    }
    return nvs_err(sim_nvs_get_u8(s_partition, s_partition_len, h->ns, key, out_value));
}

esp_err_t nvs_get_u32(nvs_handle_t handle, const char *key, uint32_t *out_value) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL || out_value == NULL) {
        return h == NULL ? err : ESP_ERR_INVALID_ARG;
    }
    return nvs_err(sim_nvs_get_u32(s_partition, s_partition_len, h->ns, key, out_value));
}

esp_err_t nvs_get_str(nvs_handle_t handle, const char *key, char *out_value, size_t *length) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL || length == NULL) {
        return h == NULL ? err : ESP_ERR_INVALID_ARG;
    }
    char *value = malloc(NVS_STR_MAX_BYTES + 1);
    if (value == NULL) {
        return ESP_ERR_NO_MEM;
    }
    err = nvs_err(
        sim_nvs_get_str(s_partition, s_partition_len, h->ns, key, value, NVS_STR_MAX_BYTES + 1));
    size_t need = err == ESP_OK ? strlen(value) + 1 : 0;
    if (err == ESP_OK && out_value != NULL) {
        if (*length < need) {
            err = ESP_ERR_NVS_INVALID_LENGTH;
        } else {
            memcpy(out_value, value, need);
        }
    }
    if (err == ESP_OK) {
        *length = need;
    }
    free(value);
    return err;
}

esp_err_t nvs_get_blob(nvs_handle_t handle, const char *key, void *out_value, size_t *length) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL || length == NULL) {
        return h == NULL ? err : ESP_ERR_INVALID_ARG;
    }
    err = nvs_kv_read(h->ns, key, out_value, length);
    if (err != ESP_ERR_NVS_NOT_FOUND) {
        return err;
    }
    uint8_t type = 0;
    err = nvs_err(sim_nvs_get_type(s_partition, s_partition_len, h->ns, key, &type));
    return err == ESP_OK ? ESP_ERR_NVS_TYPE_MISMATCH : err; /* partition blobs: not modelled */
}

static esp_err_t nvs_kv_write(const char *ns, const char *key, const void *value, size_t len) {
    char path[NVS_PATH_MAX];
    char tmp[NVS_PATH_MAX + 8];
    if (!nvs_kv_path(ns, key, path, sizeof(path))) {
        return ESP_ERR_NOT_SUPPORTED;
    }
    char what[40];
    snprintf(what, sizeof(what), "nvs_set %s", key);
    if (sim_flash_count_op(what) != SIM_FLASH_OK) {
        return ESP_FAIL; /* ESP_ERR_FLASH_OP_FAIL */
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return ESP_FAIL;
    }
    const uint8_t *p = value;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            close(fd);
            unlink(tmp);
            return ESP_FAIL;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return ESP_FAIL;
    }
    return ESP_OK;
}

esp_err_t nvs_set_blob(nvs_handle_t handle, const char *key, const void *value, size_t length) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL || (value == NULL && length > 0)) {
        return h == NULL ? err : ESP_ERR_INVALID_ARG;
    }
    if (!h->writable) {
        return ESP_ERR_NVS_READ_ONLY;
    }
    if (length > NVS_VALUE_MAX_BYTES) {
        return ESP_ERR_NVS_VALUE_TOO_LONG;
    }
    return nvs_kv_write(h->ns, key, value, length);
}

esp_err_t nvs_set_str(nvs_handle_t handle, const char *key, const char *value) {
    (void)handle;
    (void)key;
    (void)value;
    return ESP_ERR_NOT_SUPPORTED; /* the firmware writes blobs only */
}

esp_err_t nvs_set_u8(nvs_handle_t handle, const char *key, uint8_t value) {
    (void)handle;
    (void)key;
    (void)value;
    return ESP_ERR_NOT_SUPPORTED;
}

esp_err_t nvs_set_u32(nvs_handle_t handle, const char *key, uint32_t value) {
    (void)handle;
    (void)key;
    (void)value;
    return ESP_ERR_NOT_SUPPORTED;
}

esp_err_t nvs_erase_key(nvs_handle_t handle, const char *key) {
    esp_err_t err;
    const nvs_handle_entry_t *h = nvs_entry(handle, key, &err);
    if (h == NULL) {
        return err;
    }
    if (!h->writable) {
        return ESP_ERR_NVS_READ_ONLY;
    }
    char path[NVS_PATH_MAX];
    if (!nvs_kv_path(h->ns, key, path, sizeof(path)) || access(path, F_OK) != 0) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    char what[40];
    snprintf(what, sizeof(what), "nvs_erase %s", key);
    if (sim_flash_count_op(what) != SIM_FLASH_OK) {
        return ESP_FAIL;
    }
    return unlink(path) == 0 ? ESP_OK : ESP_FAIL;
}

esp_err_t nvs_commit(nvs_handle_t handle) {
    return handle >= 1 && handle <= NVS_HANDLES_MAX && s_handles[handle - 1].open
               ? ESP_OK
               : ESP_ERR_NVS_INVALID_HANDLE;
}
