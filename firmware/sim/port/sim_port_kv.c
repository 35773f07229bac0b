/*
 * sim_port_kv.c — ota_port.h's KV store (NVS namespace "csi_ota" on the
 * device) as one file per key in a directory beside the flash file.
 *
 * Writes are atomic (temp file, fsync, rename, fsync of the directory): after
 * a power cut a key holds the old or the new value. Every set and erase is
 * one flash operation on the sim flash's counter (sim_flash_count_op), so
 * --power-cut-at and injected failures cover the KV store too.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota_port.h"
#include "sim_flash.h"
#include "sim_port_internal.h"

#define SIM_KV_KEY_MAX_CHARS 15 /* NVS key limit */
#define SIM_KV_PATH_MAX 1024

static char sim_kv_dir[SIM_KV_PATH_MAX - 32];

bool sim_kv_init(const char *dir) {
    if (strlen(dir) >= sizeof(sim_kv_dir)) {
        return false;
    }
    strcpy(sim_kv_dir, dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return false;
    }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool sim_kv_path(const char *key, char *out, size_t cap) {
    size_t len = strlen(key);
    if (len == 0 || len > SIM_KV_KEY_MAX_CHARS || sim_kv_dir[0] == '\0') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return snprintf(out, cap, "%s/%s", sim_kv_dir, key) < (int)cap;
}

static void sim_kv_sync_dir(void) {
    int fd = open(sim_kv_dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

ota_status_t ota_port_kv_get(const char *key, void *buf, size_t *len) {
    char path[SIM_KV_PATH_MAX];
    if (key == NULL || buf == NULL || len == NULL || !sim_kv_path(key, path, sizeof(path))) {
        return OTA_ERR_INVALID_ARG;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return errno == ENOENT ? OTA_ERR_NOT_FOUND : OTA_ERR_IO;
    }
    size_t n = fread(buf, 1, *len, f);
    bool more = fgetc(f) != EOF;
    bool error = ferror(f) != 0;
    fclose(f);
    if (error) {
        return OTA_ERR_IO;
    }
    if (more) {
        return OTA_ERR_NO_MEM; /* value longer than the caller's buffer */
    }
    *len = n;
    return OTA_OK;
}

ota_status_t ota_port_kv_set(const char *key, const void *buf, size_t len) {
    char path[SIM_KV_PATH_MAX];
    char tmp[SIM_KV_PATH_MAX + 8];
    if (key == NULL || (buf == NULL && len > 0) || !sim_kv_path(key, path, sizeof(path))) {
        return OTA_ERR_INVALID_ARG;
    }
    char what[32];
    snprintf(what, sizeof(what), "kv_set %s", key);
    if (sim_flash_count_op(what) != SIM_FLASH_OK) {
        return OTA_ERR_FLASH_WRITE;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return OTA_ERR_IO;
    }
    const uint8_t *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            close(fd);
            unlink(tmp);
            return OTA_ERR_IO;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return OTA_ERR_IO;
    }
    sim_kv_sync_dir();
    return OTA_OK;
}

ota_status_t ota_port_kv_erase(const char *key) {
    char path[SIM_KV_PATH_MAX];
    if (key == NULL || !sim_kv_path(key, path, sizeof(path))) {
        return OTA_ERR_INVALID_ARG;
    }
    if (access(path, F_OK) != 0) {
        return OTA_ERR_NOT_FOUND;
    }
    char what[32];
    snprintf(what, sizeof(what), "kv_erase %s", key);
    if (sim_flash_count_op(what) != SIM_FLASH_OK) {
        return OTA_ERR_FLASH_ERASE;
    }
    if (unlink(path) != 0) {
        return errno == ENOENT ? OTA_ERR_NOT_FOUND : OTA_ERR_IO;
    }
    sim_kv_sync_dir();
    return OTA_OK;
}
