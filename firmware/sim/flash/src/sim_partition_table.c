/* sim_partition_table.c — parse and verify the binary partition table. */
#include "sim_partition_table.h"

#include <stdio.h>
#include <string.h>

#include "sim_digest.h"
#include "sim_le.h"

#define SIM_PARTITION_END_MARKER 0xFFu

static void set_why(char *why, size_t why_len, const char *text) {
    if (why != NULL && why_len > 0) {
        strncpy(why, text, why_len - 1);
        why[why_len - 1] = '\0';
    }
}

static void decode_entry(const uint8_t *raw, sim_partition_t *entry) {
    entry->type = raw[2];
    entry->subtype = raw[3];
    entry->offset_bytes = sim_le32(raw + 4);
    entry->size_bytes = sim_le32(raw + 8);
    memcpy(entry->label, raw + 12, 16);
    entry->label[16] = '\0';
    entry->flags = sim_le32(raw + 28);
}

sim_pt_result_t sim_partition_table_parse(const uint8_t *bytes, size_t len,
                                          uint32_t chip_size_bytes, sim_partition_table_t *out,
                                          char *why, size_t why_len) {
    char text[128];
    memset(out, 0, sizeof(*out));
    size_t max_entries = len / SIM_PARTITION_ENTRY_SIZE_BYTES;
    if (max_entries > SIM_PARTITION_MAX_ENTRIES) {
        max_entries = SIM_PARTITION_MAX_ENTRIES;
    }
    for (size_t index = 0; index < max_entries; index++) {
        const uint8_t *raw = bytes + index * SIM_PARTITION_ENTRY_SIZE_BYTES;
        uint16_t magic = sim_le16(raw);
        if (magic == SIM_PARTITION_MAGIC) {
            sim_partition_t entry;
            decode_entry(raw, &entry);
            if (entry.offset_bytes > chip_size_bytes ||
                entry.size_bytes > chip_size_bytes - entry.offset_bytes) {
                snprintf(
                    text, sizeof(text),
                    "partition %zu invalid - offset 0x%x size 0x%x exceeds flash chip size 0x%x",
                    index, (unsigned)entry.offset_bytes, (unsigned)entry.size_bytes,
                    (unsigned)chip_size_bytes);
                set_why(why, why_len, text);
                return SIM_PT_ERR_SIZE;
            }
            out->entries[out->count++] = entry;
        } else if (magic == SIM_PARTITION_MAGIC_MD5) {
            if (out->has_md5) {
                set_why(why, why_len, "Only one MD5 checksum is allowed");
                return SIM_PT_ERR_MD5;
            }
            uint8_t digest[16];
            sim_md5_t md5;
            sim_md5_init(&md5);
            sim_md5_update(&md5, bytes, index * SIM_PARTITION_ENTRY_SIZE_BYTES);
            sim_md5_finish(&md5, digest);
            if (memcmp(raw + SIM_PARTITION_MD5_OFFSET_BYTES, digest, sizeof(digest)) != 0) {
                set_why(why, why_len, "Incorrect MD5 checksum");
                return SIM_PT_ERR_MD5;
            }
            out->has_md5 = true;
        } else if (index != 0 && magic == 0xFFFFu && raw[2] == SIM_PARTITION_END_MARKER &&
                   raw[3] == SIM_PARTITION_END_MARKER) {
            return SIM_PT_OK;
        } else {
            snprintf(text, sizeof(text), "partition %zu invalid magic number 0x%x", index,
                     (unsigned)magic);
            set_why(why, why_len, text);
            return SIM_PT_ERR_MAGIC;
        }
    }
    set_why(why, why_len, "partition table has no terminating entry, not valid");
    return SIM_PT_ERR_NO_END;
}

sim_pt_result_t sim_partition_table_load(const sim_flash_t *flash, sim_partition_table_t *out,
                                         char *why, size_t why_len) {
    uint8_t raw[SIM_PARTITION_TABLE_MAX_LEN_BYTES];
    if (sim_flash_read(flash, SIM_PARTITION_TABLE_OFFSET, raw, sizeof(raw)) != SIM_FLASH_OK) {
        memset(out, 0, sizeof(*out));
        set_why(why, why_len, "cannot read the partition table at 0x8000");
        return SIM_PT_ERR_READ;
    }
    return sim_partition_table_parse(raw, sizeof(raw), sim_flash_size_bytes(flash), out, why,
                                     why_len);
}

const sim_partition_t *sim_partition_find(const sim_partition_table_t *table, uint8_t type,
                                          uint8_t subtype) {
    for (int i = 0; i < table->count; i++) {
        if (table->entries[i].type == type && table->entries[i].subtype == subtype) {
            return &table->entries[i];
        }
    }
    return NULL;
}

const sim_partition_t *sim_partition_find_label(const sim_partition_table_t *table,
                                                const char *label) {
    for (int i = 0; i < table->count; i++) {
        if (strcmp(table->entries[i].label, label) == 0) {
            return &table->entries[i];
        }
    }
    return NULL;
}

const sim_partition_t *sim_partition_ota_slot(const sim_partition_table_t *table, int slot) {
    if (slot < 0 || slot >= SIM_MAX_OTA_SLOTS) {
        return NULL;
    }
    return sim_partition_find(table, SIM_PART_TYPE_APP,
                              (uint8_t)(SIM_PART_SUBTYPE_OTA_FLAG + slot));
}

int sim_partition_bootloader_ota_count(const sim_partition_table_t *table) {
    int count = 0;
    for (int i = 0; i < table->count; i++) {
        const sim_partition_t *p = &table->entries[i];
        if (p->type == SIM_PART_TYPE_APP &&
            (p->subtype & ~SIM_PART_SUBTYPE_OTA_MASK) == SIM_PART_SUBTYPE_OTA_FLAG) {
            count++;
        }
    }
    return count;
}

int sim_partition_app_ota_count(const sim_partition_table_t *table) {
    int count = 0;
    while (count < SIM_MAX_OTA_SLOTS && sim_partition_ota_slot(table, count) != NULL) {
        count++;
    }
    return count;
}

const char *sim_pt_result_str(sim_pt_result_t result) {
    switch (result) {
    case SIM_PT_OK:
        return "ok";
    case SIM_PT_ERR_SIZE:
        return "partition exceeds the flash chip";
    case SIM_PT_ERR_MD5:
        return "MD5 checksum entry invalid";
    case SIM_PT_ERR_MAGIC:
        return "invalid entry magic";
    case SIM_PT_ERR_NO_END:
        return "no terminating entry";
    case SIM_PT_ERR_READ:
        return "read failed";
    }
    return "unknown";
}
