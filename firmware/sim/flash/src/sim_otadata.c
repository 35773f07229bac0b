/* sim_otadata.c — esp_ota_select_entry_t: CRC, predicates, selection, flash I/O. */
#include "sim_otadata.h"

#include <string.h>

#include "sim_le.h"

#define CRC32_REFLECTED_POLY 0xEDB88320u

uint32_t sim_crc32_le(uint32_t crc, const uint8_t *buf, size_t len) {
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (CRC32_REFLECTED_POLY & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

uint32_t sim_otadata_crc(const sim_otadata_entry_t *entry) {
    uint8_t seq_le[4];
    sim_put_le32(seq_le, entry->ota_seq);
    return sim_crc32_le(UINT32_MAX, seq_le, sizeof(seq_le));
}

sim_otadata_entry_t sim_otadata_make(uint32_t seq, uint32_t state) {
    sim_otadata_entry_t entry;
    memset(&entry, 0xFF, sizeof(entry));
    entry.ota_seq = seq;
    entry.ota_state = state;
    entry.crc = sim_otadata_crc(&entry);
    return entry;
}

bool sim_otadata_crc_ok(const sim_otadata_entry_t *entry) {
    return entry->crc == sim_otadata_crc(entry);
}

bool sim_otadata_entry_invalid(const sim_otadata_entry_t *entry) {
    return entry->ota_seq == UINT32_MAX || entry->ota_state == SIM_OTA_STATE_INVALID ||
           entry->ota_state == SIM_OTA_STATE_ABORTED;
}

bool sim_otadata_entry_valid(const sim_otadata_entry_t *entry) {
    return !sim_otadata_entry_invalid(entry) && sim_otadata_crc_ok(entry);
}

int sim_otadata_select(const sim_otadata_entry_t entries[2], const bool usable[2], bool max) {
    if (usable[0] && usable[1]) {
        uint32_t a = entries[0].ota_seq;
        uint32_t b = entries[1].ota_seq;
        uint32_t wanted = max ? (a > b ? a : b) : (a < b ? a : b);
        return wanted == a ? 0 : 1;
    }
    for (int i = 0; i < 2; i++) {
        if (usable[i]) {
            return i;
        }
    }
    return -1;
}

int sim_otadata_active(const sim_otadata_entry_t entries[2]) {
    bool valid[2] = {sim_otadata_entry_valid(&entries[0]), sim_otadata_entry_valid(&entries[1])};
    return sim_otadata_select(entries, valid, true);
}

int sim_otadata_slot_of_seq(uint32_t seq, int slot_count) {
    if (slot_count <= 0) {
        return -1;
    }
    return (int)((seq - 1u) % (uint32_t)slot_count);
}

void sim_otadata_pack(const sim_otadata_entry_t *entry, uint8_t out[SIM_OTADATA_ENTRY_SIZE_BYTES]) {
    sim_put_le32(out, entry->ota_seq);
    memcpy(out + 4, entry->seq_label, sizeof(entry->seq_label));
    sim_put_le32(out + 24, entry->ota_state);
    sim_put_le32(out + 28, entry->crc);
}

void sim_otadata_unpack(const uint8_t in[SIM_OTADATA_ENTRY_SIZE_BYTES],
                        sim_otadata_entry_t *entry) {
    entry->ota_seq = sim_le32(in);
    memcpy(entry->seq_label, in + 4, sizeof(entry->seq_label));
    entry->ota_state = sim_le32(in + 24);
    entry->crc = sim_le32(in + 28);
}

sim_flash_result_t sim_otadata_read(const sim_flash_t *flash, const sim_partition_t *otadata,
                                    sim_otadata_entry_t entries[2]) {
    for (int i = 0; i < 2; i++) {
        uint8_t raw[SIM_OTADATA_ENTRY_SIZE_BYTES];
        sim_flash_result_t result =
            sim_flash_read(flash, otadata->offset_bytes + (uint32_t)i * SIM_FLASH_SECTOR_SIZE_BYTES,
                           raw, sizeof(raw));
        if (result != SIM_FLASH_OK) {
            return result;
        }
        sim_otadata_unpack(raw, &entries[i]);
    }
    return SIM_FLASH_OK;
}

sim_flash_result_t sim_otadata_write(sim_flash_t *flash, const sim_partition_t *otadata, int index,
                                     const sim_otadata_entry_t *entry) {
    if (index < 0 || index > 1) {
        return SIM_FLASH_ERR_ARG;
    }
    uint32_t sector_offset = otadata->offset_bytes + (uint32_t)index * SIM_FLASH_SECTOR_SIZE_BYTES;
    sim_flash_result_t result = sim_flash_erase_sector(flash, sector_offset);
    if (result != SIM_FLASH_OK) {
        return result;
    }
    uint8_t raw[SIM_OTADATA_ENTRY_SIZE_BYTES];
    sim_otadata_pack(entry, raw);
    return sim_flash_write(flash, sector_offset, raw, sizeof(raw));
}

const char *sim_otadata_state_name(uint32_t state) {
    switch (state) {
    case SIM_OTA_STATE_NEW:
        return "new";
    case SIM_OTA_STATE_PENDING_VERIFY:
        return "pending_verify";
    case SIM_OTA_STATE_VALID:
        return "valid";
    case SIM_OTA_STATE_INVALID:
        return "invalid";
    case SIM_OTA_STATE_ABORTED:
        return "aborted";
    case SIM_OTA_STATE_UNDEFINED:
        return "undefined";
    default:
        return "unknown";
    }
}
