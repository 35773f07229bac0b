/*
 * nvs_image_tool.c — runs the virtual board's NVS engine on a partition image file, for the
 * cross-check against ESP-IDF's Python tools (tests/test_nvs_image_crosscheck.py).
 *
 *   nvs-image-tool IMAGE [--create BYTES] < commands
 *
 * The image is held as NOR flash (a write may only clear bits, 4-byte aligned; erase = 0xFF).
 * Commands, one per line (HEX = the value's bytes in hex, a string's without its NUL):
 *   open NS                       open (create) namespace NS for the following commands
 *   u8|i8|u16|i16|u32|i32|u64|i64 KEY N
 *   str KEY HEX | blob KEY HEX    nvs_set_str / nvs_set_blob
 *   erase KEY | erase_all         nvs_erase_key / nvs_erase_all
 *   reboot                        drop the engine's state and load the pages again
 *   dump                          one line per live value: NS KEY TYPE VALUE (ints in decimal,
 *                                 str/blob in hex), namespaces in order of their index
 * Exit 0 when every command returned ESP_OK, 1 (message on stderr) otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvs.h"
#include "nvs_storage.h"

typedef struct {
    uint8_t *bytes;
    size_t len;
} image_t;

static esp_err_t image_read(void *ctx, uint32_t offset, void *buf, size_t len) {
    image_t *img = ctx;
    if (offset + len > img->len) {
        return ESP_ERR_INVALID_SIZE;
    }
    memcpy(buf, img->bytes + offset, len);
    return ESP_OK;
}

static esp_err_t image_write(void *ctx, uint32_t offset, const void *buf, size_t len) {
    image_t *img = ctx;
    const uint8_t *src = buf;
    if (offset + len > img->len || offset % 4u != 0 || len % 4u != 0) {
        return ESP_ERR_INVALID_SIZE;
    }
    for (size_t i = 0; i < len; i++) {
        if ((img->bytes[offset + i] & src[i]) != src[i]) {
            fprintf(stderr, "nvs-image-tool: write over unerased byte at 0x%zx\n", offset + i);
            return NVS_ERR_FLASH_OP_FAIL;
        }
    }
    memcpy(img->bytes + offset, src, len);
    return ESP_OK;
}

static esp_err_t image_erase(void *ctx, uint32_t offset, size_t len) {
    image_t *img = ctx;
    if (offset + len > img->len || offset % NVS_PAGE_BYTES != 0) {
        return ESP_ERR_INVALID_SIZE;
    }
    memset(img->bytes + offset, 0xFF, len);
    return ESP_OK;
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    for (; hex[0] != '\0' && hex[1] != '\0' && n < cap; hex += 2) {
        unsigned byte;
        if (sscanf(hex, "%2x", &byte) != 1) {
            break;
        }
        out[n++] = (uint8_t)byte;
    }
    return n;
}

static void print_hex(const uint8_t *bytes, size_t len) {
    for (size_t i = 0; i < len; i++) {
        printf("%02x", bytes[i]);
    }
}

static const char *type_name(uint8_t type) {
    switch (type) {
    case NVS_ITEM_U8:
        return "u8";
    case NVS_ITEM_I8:
        return "i8";
    case NVS_ITEM_U16:
        return "u16";
    case NVS_ITEM_I16:
        return "i16";
    case NVS_ITEM_U32:
        return "u32";
    case NVS_ITEM_I32:
        return "i32";
    case NVS_ITEM_U64:
        return "u64";
    case NVS_ITEM_I64:
        return "i64";
    case NVS_ITEM_SZ:
        return "str";
    default:
        return "blob";
    }
}

static uint8_t type_of(const char *name) {
    static const struct {
        const char *name;
        uint8_t type;
    } types[] = {{"u8", NVS_ITEM_U8},   {"i8", NVS_ITEM_I8},   {"u16", NVS_ITEM_U16},
                 {"i16", NVS_ITEM_I16}, {"u32", NVS_ITEM_U32}, {"i32", NVS_ITEM_I32},
                 {"u64", NVS_ITEM_U64}, {"i64", NVS_ITEM_I64}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(name, types[i].name) == 0) {
            return types[i].type;
        }
    }
    return 0;
}

static void dump_value(nvs_storage_t *st, const nvs_namespace_t *ns, const nvs_item_t *item) {
    char key[NVS_KEY_BYTES] = {0};
    memcpy(key, item->key, NVS_KEY_MAX_CHARS);
    uint8_t type = item->type == NVS_ITEM_BLOB_IDX ? NVS_ITEM_BLOB : item->type;
    printf("%s %s %s ", ns->name, key, type_name(type));
    if (type == NVS_ITEM_SZ || type == NVS_ITEM_BLOB) {
        size_t size = 0;
        uint8_t *buf = NULL;
        if (nvs_storage_data_size(st, ns->index, type, key, &size) == ESP_OK &&
            (buf = malloc(size + 1u)) != NULL &&
            nvs_storage_read(st, ns->index, type, key, buf, size) == ESP_OK) {
            print_hex(buf, type == NVS_ITEM_SZ && size > 0 ? size - 1u : size);
        }
        free(buf);
    } else {
        size_t size = (size_t)(type & 0x0Fu);
        uint64_t raw = 0;
        memcpy(&raw, item->data, size);
        if (type & 0x10u) { /* signed: sign-extend */
            unsigned shift = (unsigned)(64u - 8u * size);
            printf("%" PRId64, (int64_t)(raw << shift) >> shift);
        } else {
            printf("%" PRIu64, raw);
        }
    }
    printf("\n");
}

static void dump(nvs_storage_t *st) {
    for (unsigned index = 1; index < 255u; index++) {
        const nvs_namespace_t *ns = NULL;
        for (uint32_t i = 0; i < st->namespace_count; i++) {
            if (st->namespaces[i].index == index) {
                ns = &st->namespaces[i];
            }
        }
        if (ns == NULL) {
            continue;
        }
        for (uint32_t p = 0; p < st->pm.used_len; p++) {
            nvs_page_t *page = nvs_pagemanager_at(&st->pm, p);
            size_t at = 0;
            nvs_item_t item;
            while (nvs_page_find_item(page, ns->index, NVS_ITEM_ANY, NULL, &at, &item,
                                      NVS_CHUNK_ANY, NVS_VER_ANY) == ESP_OK) {
                if (item.type != NVS_ITEM_BLOB_DATA) {
                    dump_value(st, ns, &item);
                }
                at += item.span;
            }
        }
    }
}

static esp_err_t run_line(nvs_storage_t *st, const nvs_io_t *io, uint32_t pages, char *line,
                          uint8_t *ns, uint8_t *buf, size_t cap) {
    char *cmd = strtok(line, " \t\r\n");
    char *key = strtok(NULL, " \t\r\n");
    char *arg = strtok(NULL, " \t\r\n");
    if (cmd == NULL) {
        return ESP_OK;
    }
    if (strcmp(cmd, "open") == 0 && key != NULL) {
        return nvs_storage_open_namespace(st, key, true, ns);
    }
    if (strcmp(cmd, "dump") == 0) {
        dump(st);
        return ESP_OK;
    }
    if (strcmp(cmd, "reboot") == 0) {
        nvs_storage_deinit(st);
        return nvs_storage_init(st, io, pages);
    }
    if (strcmp(cmd, "erase_all") == 0) {
        return nvs_storage_erase_namespace(st, *ns, false);
    }
    if (strcmp(cmd, "erase") == 0 && key != NULL) {
        return nvs_storage_erase(st, *ns, key, false);
    }
    if ((strcmp(cmd, "str") == 0 || strcmp(cmd, "blob") == 0) && key != NULL) {
        size_t n = unhex(arg != NULL ? arg : "", buf, cap - 1u);
        bool str = cmd[0] == 's';
        buf[n] = '\0';
        return nvs_storage_write(st, *ns, str ? NVS_ITEM_SZ : NVS_ITEM_BLOB, key, buf,
                                 str ? n + 1u : n, false);
    }
    uint8_t type = type_of(cmd);
    if (type != 0 && key != NULL && arg != NULL) {
        uint64_t raw = (type & 0x10u) ? (uint64_t)strtoll(arg, NULL, 0) : strtoull(arg, NULL, 0);
        return nvs_storage_write(st, *ns, type, key, &raw, (size_t)(type & 0x0Fu), false);
    }
    fprintf(stderr, "nvs-image-tool: bad command %s\n", cmd);
    return ESP_ERR_INVALID_ARG;
}

int main(int argc, char **argv) {
    if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--create") == 0)) {
        fprintf(stderr, "usage: nvs-image-tool IMAGE [--create BYTES] < commands\n");
        return 2;
    }
    image_t img = {0};
    if (argc == 4) {
        img.len = strtoul(argv[3], NULL, 0);
        img.bytes = malloc(img.len);
        if (img.bytes != NULL) {
            memset(img.bytes, 0xFF, img.len);
        }
    } else {
        FILE *in = fopen(argv[1], "rb");
        if (in != NULL && fseek(in, 0, SEEK_END) == 0) {
            img.len = (size_t)ftell(in);
            rewind(in);
            img.bytes = malloc(img.len);
            if (img.bytes == NULL || fread(img.bytes, 1, img.len, in) != img.len) {
                img.len = 0;
            }
        }
        if (in != NULL) {
            fclose(in);
        }
    }
    if (img.bytes == NULL || img.len == 0 || img.len % NVS_PAGE_BYTES != 0) {
        fprintf(stderr, "nvs-image-tool: %s: not a partition image (whole 4 KiB pages)\n", argv[1]);
        return 2;
    }
    nvs_io_t io = {&img, image_read, image_write, image_erase, NULL};
    uint32_t pages = (uint32_t)(img.len / NVS_PAGE_BYTES);
    static nvs_storage_t st;
    esp_err_t err = nvs_storage_init(&st, &io, pages);
    static char line[70000];
    static uint8_t buf[40000];
    uint8_t ns = 0;
    int lineno = 0;
    while (err == ESP_OK && fgets(line, sizeof(line), stdin) != NULL) {
        lineno++;
        err = run_line(&st, &io, pages, line, &ns, buf, sizeof(buf));
    }
    if (err != ESP_OK) {
        fprintf(stderr, "nvs-image-tool: line %d: error 0x%x\n", lineno, (unsigned)err);
    }
    FILE *out = fopen(argv[1], "wb");
    if (out == NULL || fwrite(img.bytes, 1, img.len, out) != img.len || fclose(out) != 0) {
        fprintf(stderr, "nvs-image-tool: cannot write %s\n", argv[1]);
        return 1;
    }
    nvs_storage_deinit(&st);
    free(img.bytes);
    return err == ESP_OK ? 0 : 1;
}
