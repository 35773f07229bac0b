/* sim_flash.c — file-backed NOR flash with operation counting and fault injection. */
#define _POSIX_C_SOURCE 200809L

#include "sim_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint32_t SUPPORTED_SIZES_BYTES[] = {4u << 20, 8u << 20, 16u << 20};

struct sim_flash {
    int fd;
    uint8_t *bytes; /* MAP_SHARED view of the whole file */
    uint32_t size_bytes;
    uint64_t op_count;
    uint64_t erase_count;
    uint64_t write_count;
    uint64_t other_count;
    uint64_t fail_first_op;
    uint64_t fail_op_count;
    uint64_t power_cut_op;
    sim_flash_cut_mode_t cut_mode;
    FILE *trace;
};

static sim_flash_t *s_default_flash;

static bool size_supported(uint64_t size_bytes) {
    for (size_t i = 0; i < sizeof(SUPPORTED_SIZES_BYTES) / sizeof(SUPPORTED_SIZES_BYTES[0]); i++) {
        if (size_bytes == SUPPORTED_SIZES_BYTES[i]) {
            return true;
        }
    }
    return false;
}

static sim_flash_result_t map_fd(int fd, uint32_t size_bytes, sim_flash_t **out) {
    void *view = mmap(NULL, size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (view == MAP_FAILED) {
        close(fd);
        return SIM_FLASH_ERR_IO;
    }
    sim_flash_t *flash = calloc(1, sizeof(*flash));
    if (flash == NULL) {
        munmap(view, size_bytes);
        close(fd);
        return SIM_FLASH_ERR_IO;
    }
    flash->fd = fd;
    flash->bytes = view;
    flash->size_bytes = size_bytes;
    flash->cut_mode = SIM_FLASH_CUT_TORN;
    *out = flash;
    return SIM_FLASH_OK;
}

sim_flash_result_t sim_flash_open(const char *path, sim_flash_t **out) {
    if (path == NULL || out == NULL) {
        return SIM_FLASH_ERR_ARG;
    }
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        return SIM_FLASH_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return SIM_FLASH_ERR_IO;
    }
    if (!size_supported((uint64_t)st.st_size)) {
        close(fd);
        return SIM_FLASH_ERR_ARG;
    }
    return map_fd(fd, (uint32_t)st.st_size, out);
}

sim_flash_result_t sim_flash_create(const char *path, uint32_t size_bytes, sim_flash_t **out) {
    if (path == NULL || out == NULL) {
        return SIM_FLASH_ERR_ARG;
    }
    if (!size_supported(size_bytes)) {
        return SIM_FLASH_ERR_ARG;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return SIM_FLASH_ERR_IO;
    }
    if (ftruncate(fd, size_bytes) != 0) {
        close(fd);
        return SIM_FLASH_ERR_IO;
    }
    sim_flash_result_t result = map_fd(fd, size_bytes, out);
    if (result == SIM_FLASH_OK) {
        memset((*out)->bytes, 0xFF, size_bytes);
    }
    return result;
}

void sim_flash_close(sim_flash_t *flash) {
    if (flash == NULL) {
        return;
    }
    if (s_default_flash == flash) {
        s_default_flash = NULL;
    }
    munmap(flash->bytes, flash->size_bytes);
    close(flash->fd);
    free(flash);
}

uint32_t sim_flash_size_bytes(const sim_flash_t *flash) {
    return flash == NULL ? 0 : flash->size_bytes;
}

static bool in_range(const sim_flash_t *flash, uint32_t offset_bytes, size_t len) {
    return offset_bytes <= flash->size_bytes && len <= (size_t)(flash->size_bytes - offset_bytes);
}

sim_flash_result_t sim_flash_read(const sim_flash_t *flash, uint32_t offset_bytes, void *buf,
                                  size_t len) {
    if (flash == NULL || (buf == NULL && len > 0)) {
        return SIM_FLASH_ERR_ARG;
    }
    if (!in_range(flash, offset_bytes, len)) {
        return SIM_FLASH_ERR_RANGE;
    }
    memcpy(buf, flash->bytes + offset_bytes, len);
    return SIM_FLASH_OK;
}

typedef enum { OP_KIND_ERASE, OP_KIND_WRITE, OP_KIND_OTHER } op_kind_t;

typedef enum { OP_PROCEED, OP_FAIL, OP_CUT } op_verdict_t;

/* Numbers the next operation and decides its fate. */
static op_verdict_t begin_op(sim_flash_t *flash, op_kind_t kind, const char *what,
                             uint32_t offset_bytes, size_t len) {
    uint64_t number = ++flash->op_count;
    switch (kind) {
    case OP_KIND_ERASE:
        flash->erase_count++;
        break;
    case OP_KIND_WRITE:
        flash->write_count++;
        break;
    case OP_KIND_OTHER:
        flash->other_count++;
        break;
    }
    bool fails = flash->fail_op_count > 0 && number >= flash->fail_first_op &&
                 number - flash->fail_first_op < flash->fail_op_count;
    bool cut = flash->power_cut_op != 0 && number == flash->power_cut_op;
    if (flash->trace != NULL) {
        fprintf(flash->trace, "flash op %llu: %s 0x%06x len %zu%s\n", (unsigned long long)number,
                what, (unsigned)offset_bytes, len,
                cut     ? " [power cut]"
                : fails ? " [injected failure]"
                        : "");
        fflush(flash->trace);
    }
    if (cut) {
        return OP_CUT;
    }
    return fails ? OP_FAIL : OP_PROCEED;
}

#ifdef CSI_OTA_SIM_COVERAGE
void __gcov_dump(void); /* libgcov (gcov builds): this run's counts before _exit drops them */
#endif

static void power_off(const sim_flash_t *flash, const char *what, uint32_t offset_bytes,
                      size_t len) {
    printf("POWER CUT at flash op %llu (%s 0x%06x len %zu)\n", (unsigned long long)flash->op_count,
           what, (unsigned)offset_bytes, len);
    fflush(NULL);
#ifdef CSI_OTA_SIM_COVERAGE
    __gcov_dump();
#endif
    _exit(SIM_FLASH_POWER_CUT_EXIT_CODE);
}

static bool sets_a_bit(const uint8_t *current, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if ((uint8_t)(current[i] & data[i]) != data[i]) {
            return true;
        }
    }
    return false;
}

static void program(sim_flash_t *flash, uint32_t offset_bytes, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        flash->bytes[offset_bytes + i] &= data[i];
    }
}

sim_flash_result_t sim_flash_write(sim_flash_t *flash, uint32_t offset_bytes, const void *data,
                                   size_t len) {
    if (flash == NULL || (data == NULL && len > 0)) {
        return SIM_FLASH_ERR_ARG;
    }
    if (len == 0) {
        return SIM_FLASH_OK;
    }
    if (!in_range(flash, offset_bytes, len)) {
        return SIM_FLASH_ERR_RANGE;
    }
    if (offset_bytes % SIM_FLASH_WRITE_ALIGN_BYTES != 0 || len % SIM_FLASH_WRITE_ALIGN_BYTES != 0) {
        return SIM_FLASH_ERR_ALIGN;
    }
    const uint8_t *bytes = data;
    if (sets_a_bit(flash->bytes + offset_bytes, bytes, len)) {
        return SIM_FLASH_ERR_NOT_ERASED;
    }
    op_verdict_t verdict = begin_op(flash, OP_KIND_WRITE, "write", offset_bytes, len);
    if (verdict == OP_FAIL) {
        return SIM_FLASH_ERR_INJECTED;
    }
    if (verdict == OP_CUT) {
        if (flash->cut_mode == SIM_FLASH_CUT_TORN) {
            size_t torn_len = (len / 2) - (len / 2) % SIM_FLASH_WRITE_ALIGN_BYTES;
            program(flash, offset_bytes, bytes, torn_len);
        }
        power_off(flash, "write", offset_bytes, len);
    }
    program(flash, offset_bytes, bytes, len);
    return SIM_FLASH_OK;
}

sim_flash_result_t sim_flash_erase_sector(sim_flash_t *flash, uint32_t offset_bytes) {
    if (flash == NULL) {
        return SIM_FLASH_ERR_ARG;
    }
    if (offset_bytes % SIM_FLASH_SECTOR_SIZE_BYTES != 0) {
        return SIM_FLASH_ERR_ALIGN;
    }
    if (!in_range(flash, offset_bytes, SIM_FLASH_SECTOR_SIZE_BYTES)) {
        return SIM_FLASH_ERR_RANGE;
    }
    op_verdict_t verdict =
        begin_op(flash, OP_KIND_ERASE, "erase", offset_bytes, SIM_FLASH_SECTOR_SIZE_BYTES);
    if (verdict == OP_FAIL) {
        return SIM_FLASH_ERR_INJECTED;
    }
    if (verdict == OP_CUT) {
        if (flash->cut_mode == SIM_FLASH_CUT_TORN) {
            memset(flash->bytes + offset_bytes, 0xFF, SIM_FLASH_SECTOR_SIZE_BYTES / 2);
        }
        power_off(flash, "erase", offset_bytes, SIM_FLASH_SECTOR_SIZE_BYTES);
    }
    memset(flash->bytes + offset_bytes, 0xFF, SIM_FLASH_SECTOR_SIZE_BYTES);
    return SIM_FLASH_OK;
}

sim_flash_result_t sim_flash_erase_range(sim_flash_t *flash, uint32_t offset_bytes,
                                         uint32_t len_bytes) {
    if (flash == NULL) {
        return SIM_FLASH_ERR_ARG;
    }
    if (offset_bytes % SIM_FLASH_SECTOR_SIZE_BYTES != 0 ||
        len_bytes % SIM_FLASH_SECTOR_SIZE_BYTES != 0) {
        return SIM_FLASH_ERR_ALIGN;
    }
    if (!in_range(flash, offset_bytes, len_bytes)) {
        return SIM_FLASH_ERR_RANGE;
    }
    for (uint32_t done = 0; done < len_bytes; done += SIM_FLASH_SECTOR_SIZE_BYTES) {
        sim_flash_result_t result = sim_flash_erase_sector(flash, offset_bytes + done);
        if (result != SIM_FLASH_OK) {
            return result;
        }
    }
    return SIM_FLASH_OK;
}

uint64_t sim_flash_op_count(const sim_flash_t *flash) {
    return flash == NULL ? 0 : flash->op_count;
}
uint64_t sim_flash_erase_count(const sim_flash_t *flash) {
    return flash == NULL ? 0 : flash->erase_count;
}
uint64_t sim_flash_write_count(const sim_flash_t *flash) {
    return flash == NULL ? 0 : flash->write_count;
}
uint64_t sim_flash_other_op_count(const sim_flash_t *flash) {
    return flash == NULL ? 0 : flash->other_count;
}

void sim_flash_set_fail_ops(sim_flash_t *flash, uint64_t first_op, uint64_t count) {
    if (flash != NULL) {
        flash->fail_first_op = first_op;
        flash->fail_op_count = count;
    }
}

void sim_flash_set_power_cut(sim_flash_t *flash, uint64_t op_number, sim_flash_cut_mode_t mode) {
    if (flash != NULL) {
        flash->power_cut_op = op_number;
        flash->cut_mode = mode;
    }
}

void sim_flash_set_trace(sim_flash_t *flash, FILE *trace) {
    if (flash != NULL) {
        flash->trace = trace;
    }
}

void sim_flash_set_default(sim_flash_t *flash) {
    s_default_flash = flash;
}

sim_flash_t *sim_flash_get_default(void) {
    return s_default_flash;
}

sim_flash_result_t sim_flash_count_op(const char *what) {
    sim_flash_t *flash = s_default_flash;
    if (flash == NULL) {
        return SIM_FLASH_OK;
    }
    const char *label = what == NULL ? "other" : what;
    op_verdict_t verdict = begin_op(flash, OP_KIND_OTHER, label, 0, 0);
    if (verdict == OP_CUT) {
        power_off(flash, label, 0, 0);
    }
    return verdict == OP_FAIL ? SIM_FLASH_ERR_INJECTED : SIM_FLASH_OK;
}

const char *sim_flash_result_str(sim_flash_result_t result) {
    switch (result) {
    case SIM_FLASH_OK:
        return "ok";
    case SIM_FLASH_ERR_ARG:
        return "invalid argument";
    case SIM_FLASH_ERR_RANGE:
        return "outside the flash chip";
    case SIM_FLASH_ERR_ALIGN:
        return "misaligned (writes: 4-byte words, erases: 4 KiB sectors)";
    case SIM_FLASH_ERR_NOT_ERASED:
        return "write would set a 0 bit to 1 (not erased)";
    case SIM_FLASH_ERR_INJECTED:
        return "injected failure";
    case SIM_FLASH_ERR_IO:
        return "backing file error";
    }
    return "unknown";
}

void sim_flash_restore_counters(sim_flash_t *flash, uint64_t ops, uint64_t erases, uint64_t writes,
                                uint64_t others) {
    flash->op_count = ops;
    flash->erase_count = erases;
    flash->write_count = writes;
    flash->other_count = others;
}
