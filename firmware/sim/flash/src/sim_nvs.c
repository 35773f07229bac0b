/* sim_nvs.c — read-only lookup of U8 / U32 / string settings in an NVS partition image. */
#include "sim_nvs.h"

#include <stdbool.h>
#include <string.h>

#include "sim_otadata.h" /* sim_crc32_le */

#define SIM_NVS_HEADER_BYTES 32u
#define SIM_NVS_BITMAP_OFFSET 32u
#define SIM_NVS_FIRST_ENTRY_OFFSET 64u
#define SIM_NVS_ENTRY_BYTES 32u
#define SIM_NVS_ENTRIES_PER_PAGE 126u
#define SIM_NVS_KEY_OFFSET 8u
#define SIM_NVS_DATA_OFFSET 24u

#define SIM_NVS_PAGE_ACTIVE 0xFFFFFFFEu
#define SIM_NVS_PAGE_FULL 0xFFFFFFFCu
#define SIM_NVS_PAGE_FREEING 0xFFFFFFF8u
#define SIM_NVS_ENTRY_WRITTEN 0x2u

#define SIM_NVS_TYPE_U8 0x01u
#define SIM_NVS_TYPE_U32 0x04u
#define SIM_NVS_TYPE_STR 0x21u
#define SIM_NVS_TYPE_ANY 0x00u

#define SIM_NVS_MAX_PAGES 256u /* 1 MiB: far above any nvs partition */

static uint32_t sim_nvs_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static bool sim_nvs_page_readable(const uint8_t *page) {
    uint32_t state = sim_nvs_le32(page);
    if (state != SIM_NVS_PAGE_ACTIVE && state != SIM_NVS_PAGE_FULL &&
        state != SIM_NVS_PAGE_FREEING) {
        return false; /* empty, corrupt or unknown */
    }
    return sim_nvs_le32(page + 28) == sim_crc32_le(UINT32_MAX, page + 4, 24);
}

static unsigned sim_nvs_entry_state(const uint8_t *page, unsigned index) {
    return (page[SIM_NVS_BITMAP_OFFSET + index / 4u] >> ((index % 4u) * 2u)) & 0x3u;
}

static bool sim_nvs_entry_crc_ok(const uint8_t *entry) {
    uint32_t crc = sim_crc32_le(UINT32_MAX, entry, 4);
    crc = sim_crc32_le(crc, entry + SIM_NVS_KEY_OFFSET, SIM_NVS_ENTRY_BYTES - SIM_NVS_KEY_OFFSET);
    return sim_nvs_le32(entry + 4) == crc;
}

static bool sim_nvs_key_is(const uint8_t *entry, const char *key) {
    const char *stored = (const char *)(entry + SIM_NVS_KEY_OFFSET);
    size_t len = strlen(key);
    return memcmp(stored, key, len) == 0 && (len == 16u || stored[len] == '\0');
}

typedef struct {
    const uint8_t *entry; /* the matching entry (its data follows for strings) */
    uint8_t span;
} sim_nvs_hit_t;

/* Pages in sequence-number order: index of the readable page with the smallest
 * sequence number above after_seq (or any, when first), or -1. */
static long sim_nvs_next_page(const uint8_t *partition, size_t pages, bool first,
                              uint32_t after_seq, uint32_t *seq_out) {
    long best = -1;
    uint32_t best_seq = 0;
    for (size_t i = 0; i < pages; i++) {
        const uint8_t *page = partition + i * SIM_NVS_PAGE_BYTES;
        if (!sim_nvs_page_readable(page)) {
            continue;
        }
        uint32_t seq = sim_nvs_le32(page + 4);
        if ((first || seq > after_seq) && (best < 0 || seq < best_seq)) {
            best = (long)i;
            best_seq = seq;
        }
    }
    *seq_out = best_seq;
    return best;
}

/* The last written, CRC-clean entry of namespace ns_index named key (type 0 = any type). */
static bool sim_nvs_find(const uint8_t *partition, size_t pages, uint8_t ns_index, const char *key,
                         uint8_t type, sim_nvs_hit_t *hit) {
    bool found = false;
    uint32_t seq = 0;
    bool first = true;
    for (long p = sim_nvs_next_page(partition, pages, true, 0, &seq); p >= 0;
         p = sim_nvs_next_page(partition, pages, first, seq, &seq)) {
        first = false;
        const uint8_t *page = partition + (size_t)p * SIM_NVS_PAGE_BYTES;
        unsigned index = 0;
        while (index < SIM_NVS_ENTRIES_PER_PAGE) {
            const uint8_t *entry =
                page + SIM_NVS_FIRST_ENTRY_OFFSET + (size_t)index * SIM_NVS_ENTRY_BYTES;
            if (sim_nvs_entry_state(page, index) != SIM_NVS_ENTRY_WRITTEN ||
                !sim_nvs_entry_crc_ok(entry)) {
                index++;
                continue;
            }
            uint8_t span = entry[2];
            if (span == 0 || index + span > SIM_NVS_ENTRIES_PER_PAGE) {
                index++;
                continue;
            }
            if (entry[0] == ns_index && (type == SIM_NVS_TYPE_ANY || entry[1] == type) &&
                sim_nvs_key_is(entry, key)) {
                hit->entry = entry;
                hit->span = span;
                found = true;
            }
            index += span;
        }
    }
    return found;
}

static sim_nvs_result_t sim_nvs_lookup(const uint8_t *partition, size_t len_bytes, const char *ns,
                                       const char *key, uint8_t type, sim_nvs_hit_t *hit) {
    if (partition == NULL || ns == NULL || key == NULL || len_bytes == 0 ||
        len_bytes % SIM_NVS_PAGE_BYTES != 0 || len_bytes / SIM_NVS_PAGE_BYTES > SIM_NVS_MAX_PAGES ||
        strlen(ns) > SIM_NVS_KEY_MAX_CHARS || strlen(key) > SIM_NVS_KEY_MAX_CHARS) {
        return SIM_NVS_ERR_ARG;
    }
    size_t pages = len_bytes / SIM_NVS_PAGE_BYTES;
    sim_nvs_hit_t ns_hit;
    if (!sim_nvs_find(partition, pages, 0, ns, SIM_NVS_TYPE_U8, &ns_hit)) {
        return SIM_NVS_NOT_FOUND;
    }
    uint8_t ns_index = ns_hit.entry[SIM_NVS_DATA_OFFSET];
    if (ns_index == 0 || ns_index == 0xFF) {
        return SIM_NVS_NOT_FOUND;
    }
    if (!sim_nvs_find(partition, pages, ns_index, key, SIM_NVS_TYPE_ANY, hit)) {
        return SIM_NVS_NOT_FOUND;
    }
    return hit->entry[1] == type ? SIM_NVS_OK : SIM_NVS_TYPE_MISMATCH;
}

sim_nvs_result_t sim_nvs_get_u8(const uint8_t *partition, size_t len_bytes, const char *ns,
                                const char *key, uint8_t *out) {
    sim_nvs_hit_t hit;
    sim_nvs_result_t r = sim_nvs_lookup(partition, len_bytes, ns, key, SIM_NVS_TYPE_U8, &hit);
    if (r == SIM_NVS_OK) {
        *out = hit.entry[SIM_NVS_DATA_OFFSET];
    }
    return r;
}

sim_nvs_result_t sim_nvs_get_u32(const uint8_t *partition, size_t len_bytes, const char *ns,
                                 const char *key, uint32_t *out) {
    sim_nvs_hit_t hit;
    sim_nvs_result_t r = sim_nvs_lookup(partition, len_bytes, ns, key, SIM_NVS_TYPE_U32, &hit);
    if (r == SIM_NVS_OK) {
        *out = sim_nvs_le32(hit.entry + SIM_NVS_DATA_OFFSET);
    }
    return r;
}

sim_nvs_result_t sim_nvs_get_str(const uint8_t *partition, size_t len_bytes, const char *ns,
                                 const char *key, char *out, size_t cap) {
    sim_nvs_hit_t hit;
    sim_nvs_result_t r = sim_nvs_lookup(partition, len_bytes, ns, key, SIM_NVS_TYPE_STR, &hit);
    if (r != SIM_NVS_OK) {
        return r;
    }
    const uint8_t *data = hit.entry + SIM_NVS_DATA_OFFSET;
    size_t size = (size_t)data[0] | ((size_t)data[1] << 8);
    const uint8_t *bytes = hit.entry + SIM_NVS_ENTRY_BYTES;
    if (size == 0 || size > (size_t)(hit.span - 1u) * SIM_NVS_ENTRY_BYTES ||
        sim_nvs_le32(data + 4) != sim_crc32_le(UINT32_MAX, bytes, size) ||
        bytes[size - 1] != '\0') {
        return SIM_NVS_NOT_FOUND; /* damaged data: NVS would not return it either */
    }
    if (size > cap) {
        return SIM_NVS_TOO_LONG;
    }
    memcpy(out, bytes, size);
    return SIM_NVS_OK;
}

sim_nvs_result_t sim_nvs_get_type(const uint8_t *partition, size_t len_bytes, const char *ns,
                                  const char *key, uint8_t *type) {
    sim_nvs_hit_t hit;
    sim_nvs_result_t r = sim_nvs_lookup(partition, len_bytes, ns, key, SIM_NVS_TYPE_ANY, &hit);
    if (r == SIM_NVS_OK || r == SIM_NVS_TYPE_MISMATCH) {
        *type = hit.entry[1];
        return SIM_NVS_OK;
    }
    return r;
}

bool sim_nvs_namespace_exists(const uint8_t *partition, size_t len_bytes, const char *ns) {
    sim_nvs_hit_t hit;
    if (partition == NULL || ns == NULL || len_bytes == 0 || len_bytes % SIM_NVS_PAGE_BYTES != 0 ||
        len_bytes / SIM_NVS_PAGE_BYTES > SIM_NVS_MAX_PAGES || strlen(ns) > SIM_NVS_KEY_MAX_CHARS) {
        return false;
    }
    if (!sim_nvs_find(partition, len_bytes / SIM_NVS_PAGE_BYTES, 0, ns, SIM_NVS_TYPE_U8, &hit)) {
        return false;
    }
    uint8_t ns_index = hit.entry[SIM_NVS_DATA_OFFSET];
    return ns_index != 0 && ns_index != 0xFF;
}

const char *sim_nvs_result_str(sim_nvs_result_t result) {
    switch (result) {
    case SIM_NVS_OK:
        return "ok";
    case SIM_NVS_NOT_FOUND:
        return "not found";
    case SIM_NVS_TYPE_MISMATCH:
        return "type mismatch";
    case SIM_NVS_TOO_LONG:
        return "value too long";
    case SIM_NVS_ERR_ARG:
        return "bad argument";
    }
    return "unknown";
}
