/*
 * test_nvs_power_cut.c — the power-cut sweep of the NVS engine: a sequence of NVS writes
 * (typed values, strings, blobs of one and of several pages, erases, enough overwrites for
 * garbage collection to run) is cut at every flash operation N, torn and before, in a child
 * process (the flash model _exit()s on the cut). Then the board "reboots": the engine loads the
 * pages again and every key must hold its value from before or from after the write that was
 * cut — never garbage, never lost — and a following write must work and survive a reboot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "nvs.h"
#include "nvs_storage.h"
#include "nvs_test_flash.h"

#define PAGES 4u
#define KEYS 5
#define STEPS 60
#define VALUE_MAX 6000

typedef enum { OP_U32, OP_STR, OP_BLOB, OP_ERASE } op_kind_t;

static const char *const s_keys[KEYS] = {"count", "url", "rec", "big", "tmp"};
static const uint8_t s_types[KEYS] = {NVS_ITEM_U32, NVS_ITEM_SZ, NVS_ITEM_BLOB, NVS_ITEM_BLOB,
                                      NVS_ITEM_SZ};

typedef struct {
    bool present;
    size_t len;
    uint8_t bytes[VALUE_MAX];
} value_t;

/* Step s writes key step_key(s) with a value derived from s (or erases "tmp"). */
static int step_key(int s) {
    return (s * 7 + s / 5) % KEYS;
}

static void step_value(int s, value_t *v) {
    int k = step_key(s);
    v->present = true;
    switch (k) {
    case 0:
        v->len = 4;
        memcpy(v->bytes, &(uint32_t){(uint32_t)s * 1000u + 1u}, 4);
        break;
    case 1:
    case 4: {
        if (k == 4 && s % 3 == 0) {
            v->present = false; /* an erase */
            v->len = 0;
            return;
        }
        size_t n = 5u + (size_t)(s * 53) % 180u;
        for (size_t i = 0; i < n; i++) {
            v->bytes[i] = (uint8_t)('a' + (s + (int)i) % 26);
        }
        v->bytes[n] = '\0';
        v->len = n + 1u;
        break;
    }
    case 2:
        v->len = 20u + (size_t)(s * 31) % 400u;
        memset(v->bytes, s & 0xFF, v->len);
        v->bytes[0] = (uint8_t)s;
        break;
    default: /* a blob over two pages */
        v->len = 4100u + (size_t)(s * 11) % 800u;
        for (size_t i = 0; i < v->len; i++) {
            v->bytes[i] = (uint8_t)(i * 3u + (unsigned)s);
        }
        break;
    }
}

static esp_err_t apply_step(nvs_storage_t *st, uint8_t ns, int s) {
    static value_t v;
    step_value(s, &v);
    int k = step_key(s);
    if (!v.present) {
        esp_err_t err = nvs_storage_erase(st, ns, s_keys[k], false);
        return err == ESP_ERR_NVS_NOT_FOUND ? ESP_OK : err;
    }
    return nvs_storage_write(st, ns, s_types[k], s_keys[k], v.bytes, v.len, false);
}

static void read_key(nvs_storage_t *st, uint8_t ns, int k, value_t *out) {
    out->present = false;
    out->len = 0;
    size_t size = 0;
    uint8_t type = s_types[k] == NVS_ITEM_U32 ? NVS_ITEM_U32 : s_types[k];
    if (type == NVS_ITEM_U32) {
        esp_err_t err = nvs_storage_read(st, ns, type, s_keys[k], out->bytes, 4);
        assert_true(err == ESP_OK || err == ESP_ERR_NVS_NOT_FOUND);
        out->present = err == ESP_OK;
        out->len = out->present ? 4 : 0;
        return;
    }
    esp_err_t err = nvs_storage_data_size(st, ns, type, s_keys[k], &size);
    assert_true(err == ESP_OK || err == ESP_ERR_NVS_NOT_FOUND);
    if (err != ESP_OK) {
        return;
    }
    assert_true(size <= VALUE_MAX);
    err = nvs_storage_read(st, ns, type, s_keys[k], out->bytes, size);
    assert_int_equal(err, ESP_OK);
    out->present = true;
    out->len = size;
}

static bool same(const value_t *a, const value_t *b) {
    return a->present == b->present && a->len == b->len &&
           (!a->present || memcmp(a->bytes, b->bytes, a->len) == 0);
}

typedef struct {
    char base_path[512];
    char path[512];
    value_t expect[STEPS + 1][KEYS]; /* the values after step s - 1 */
} sweep_t;

static sweep_t s_sweep;

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    static char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    fclose(in);
    fclose(out);
}

/* The chip before the sequence: namespace and one value for every key. */
static void prepare_base(void) {
    nvs_test_flash_path(s_sweep.base_path, sizeof(s_sweep.base_path), "nvs-cut-base");
    nvs_test_flash_path(s_sweep.path, sizeof(s_sweep.path), "nvs-cut");
    nvs_test_flash_t f;
    nvs_test_flash_open(&f, s_sweep.base_path, true);
    nvs_storage_t st;
    assert_int_equal(nvs_storage_init(&st, &f.io, PAGES), ESP_OK);
    uint8_t ns = 0;
    assert_int_equal(nvs_storage_open_namespace(&st, "csi_ota", true, &ns), ESP_OK);
    memset(s_sweep.expect[0], 0, sizeof(s_sweep.expect[0]));
    for (int s = -KEYS; s < 0; s++) {
        /* Steps -5..-1 give every key a first value (step -k writes key k's value of 100+k). */
        int k = -s - 1;
        value_t *v = &s_sweep.expect[0][k];
        step_value(100 + k * 7, v);
        v->present = true;
        if (s_types[k] == NVS_ITEM_U32) {
            v->len = 4;
        } else if (s_types[k] == NVS_ITEM_SZ) {
            v->len = 12;
            memcpy(v->bytes, "first value", 12);
        } else {
            v->len = k == 3 ? 4500u : 64u;
            memset(v->bytes, 0x40 + k, v->len);
        }
        assert_int_equal(nvs_storage_write(&st, ns, s_types[k], s_keys[k], v->bytes, v->len, false),
                         ESP_OK);
    }
    for (int s = 0; s < STEPS; s++) {
        memcpy(s_sweep.expect[s + 1], s_sweep.expect[s], sizeof(s_sweep.expect[s]));
        step_value(s, &s_sweep.expect[s + 1][step_key(s)]);
    }
    nvs_storage_deinit(&st);
    nvs_test_flash_close(&f);
}

/* Runs the sequence on a copy of the base chip, cut at op (0: no cut). Returns the last step
 * the child started (-1: none), and whether the power was cut. */
static int run_cut(uint64_t op, sim_flash_cut_mode_t mode, bool *cut, uint64_t *ops_used) {
    copy_file(s_sweep.base_path, s_sweep.path);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        nvs_test_flash_t f;
        nvs_test_flash_open(&f, s_sweep.path, false);
        sim_flash_set_power_cut(f.flash, op, mode);
        freopen("/dev/null", "w", stdout); /* the "POWER CUT" line */
        nvs_storage_t st;
        int32_t step = -1;
        if (write(fds[1], &step, sizeof(step)) != sizeof(step) ||
            nvs_storage_init(&st, &f.io, PAGES) != ESP_OK) {
            _exit(3);
        }
        uint8_t ns = 0;
        if (nvs_storage_open_namespace(&st, "csi_ota", true, &ns) != ESP_OK) {
            _exit(4);
        }
        for (step = 0; step < STEPS; step++) {
            if (write(fds[1], &step, sizeof(step)) != sizeof(step) ||
                apply_step(&st, ns, step) != ESP_OK) {
                _exit(5);
            }
        }
        uint64_t used = sim_flash_op_count(f.flash);
        if (write(fds[1], &used, sizeof(used)) != sizeof(used)) {
            _exit(6);
        }
        _exit(0);
    }
    close(fds[1]);
    int32_t step = -1, last = -2;
    while (read(fds[0], &step, sizeof(step)) == sizeof(step) && step < STEPS) {
        last = step;
        if (last == STEPS - 1) {
            uint64_t used = 0;
            if (read(fds[0], &used, sizeof(used)) == sizeof(used)) {
                *ops_used = used;
            }
            break;
        }
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    if (code != 0 && code != SIM_FLASH_POWER_CUT_EXIT_CODE) {
        fail_msg("child failed with %d at step %d (cut at op %llu)", code, last,
                 (unsigned long long)op);
    }
    *cut = code == SIM_FLASH_POWER_CUT_EXIT_CODE;
    return last;
}

static uint64_t s_blob_losses;

/* ESP-IDF's own behaviour, modelled as it is (Page::mLoadEntryTable, "check that last item is
 * not duplicate", searches BLOB_DATA with CHUNK_ANY): when a blob overwrite is cut after a new
 * data chunk became the last item of the active page and before the new BLOB_IDX was written,
 * the load erases the first chunk of the same key on that page — a chunk of the old version —
 * and Storage::init then drops the old index (chunks missing) and the new chunk (no index).
 * The key is gone, not old, not new. Only this case may lose a value. */
static bool esp_idf_blob_loss(int last, int k, const value_t *got, const value_t *before) {
    return !got->present && before->present && s_types[k] == NVS_ITEM_BLOB && last >= 0 &&
           step_key(last) == k;
}

/* After the reboot: each key holds its value from before or after the step that was cut. */
static void check_after_cut(int last, uint64_t op) {
    nvs_test_flash_t f;
    nvs_test_flash_open(&f, s_sweep.path, false);
    nvs_storage_t st;
    esp_err_t err = nvs_storage_init(&st, &f.io, PAGES);
    if (err != ESP_OK) {
        fail_msg("reload after cut at op %llu: error 0x%x", (unsigned long long)op, err);
    }
    uint8_t ns = 0;
    assert_int_equal(nvs_storage_open_namespace(&st, "csi_ota", true, &ns), ESP_OK);
    int step = last < 0 ? 0 : last;
    static value_t got;
    for (int k = 0; k < KEYS; k++) {
        read_key(&st, ns, k, &got);
        const value_t *before = &s_sweep.expect[step][k];
        const value_t *after = &s_sweep.expect[step + 1][k];
        if (esp_idf_blob_loss(last, k, &got, before)) {
            s_blob_losses++;
            printf("[ esp-idf  ] cut at op %llu during step %d: blob %s lost (old chunk on the "
                   "active page erased as a duplicate of the new one)\n",
                   (unsigned long long)op, last, s_keys[k]);
            continue;
        }
        if (!same(&got, before) && !same(&got, after)) {
            fail_msg("cut at op %llu during step %d: key %s holds neither the old nor the new "
                     "value (present %d, %zu bytes)",
                     (unsigned long long)op, last, s_keys[k], got.present, got.len);
        }
    }
    /* A following write works and survives another reboot. */
    uint32_t marker = 0xC0FFEEu + (uint32_t)op;
    assert_int_equal(nvs_storage_write(&st, ns, NVS_ITEM_U32, "count", &marker, 4, false), ESP_OK);
    assert_int_equal(nvs_storage_write(&st, ns, NVS_ITEM_SZ, "after", "cut", 4, false), ESP_OK);
    nvs_storage_deinit(&st);
    assert_int_equal(nvs_storage_init(&st, &f.io, PAGES), ESP_OK);
    assert_int_equal(nvs_storage_open_namespace(&st, "csi_ota", false, &ns), ESP_OK);
    uint32_t back = 0;
    assert_int_equal(nvs_storage_read(&st, ns, NVS_ITEM_U32, "count", &back, 4), ESP_OK);
    assert_int_equal(back, marker);
    char text[8];
    assert_int_equal(nvs_storage_read(&st, ns, NVS_ITEM_SZ, "after", text, 4), ESP_OK);
    assert_string_equal(text, "cut");
    nvs_storage_deinit(&st);
    nvs_test_flash_close(&f);
}

static void sweep(sim_flash_cut_mode_t mode) {
    prepare_base();
    bool cut = false;
    uint64_t total = 0;
    int last = run_cut(0, mode, &cut, &total);
    assert_false(cut);
    assert_int_equal(last, STEPS - 1);
    assert_true(total > 200u); /* the sequence runs through garbage collections */
    uint64_t cuts = 0;
    s_blob_losses = 0;
    for (uint64_t op = 1; op <= total; op++) {
        last = run_cut(op, mode, &cut, &(uint64_t){0});
        assert_true(cut);
        check_after_cut(last, op);
        cuts++;
    }
    printf("[ sweep    ] %s: %llu cut points, every key old or new after each but %llu blob "
           "losses of ESP-IDF's own\n",
           mode == SIM_FLASH_CUT_TORN ? "torn" : "before", (unsigned long long)cuts,
           (unsigned long long)s_blob_losses);
    assert_true(s_blob_losses * 20u < cuts); /* a narrow window, not a habit */
    unlink(s_sweep.path);
    unlink(s_sweep.base_path);
}

static void test_cut_torn_at_every_flash_operation(void **state) {
    (void)state;
    sweep(SIM_FLASH_CUT_TORN);
}

static void test_cut_before_every_flash_operation(void **state) {
    (void)state;
    sweep(SIM_FLASH_CUT_BEFORE);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]); /* e.g. "*torn*" */
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_torn_at_every_flash_operation),
        cmocka_unit_test(test_cut_before_every_flash_operation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
