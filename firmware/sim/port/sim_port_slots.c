/* sim_port_slots.c — ota_port.h's slot half on the flash model's esp_ota_ops (sim_ota_ops.h). */
#include "ota_port.h"
#include "sim_ota_ops.h"

struct ota_port_update {
    sim_ota_update_t *update;
};

int ota_port_running_slot(void) {
    return sim_ota_running_slot();
}
int ota_port_boot_slot(void) {
    return sim_ota_boot_slot();
}
int ota_port_next_update_slot(void) {
    return sim_ota_next_update_slot();
}
ota_status_t ota_port_slot_size(int slot, uint32_t *size_bytes) {
    return sim_ota_slot_size(slot, size_bytes);
}
ota_status_t ota_port_slot_state(int slot, ota_img_state_t *state) {
    return sim_ota_slot_state(slot, state);
}
ota_status_t ota_port_slot_app_desc(int slot, ota_app_desc_t *desc) {
    return sim_ota_slot_app_desc(slot, desc);
}
ota_status_t ota_port_slot_read(int slot, uint32_t offset_bytes, void *buf, size_t len) {
    return sim_ota_slot_read(slot, offset_bytes, buf, len);
}
ota_status_t ota_port_update_begin(int slot, uint32_t image_size_bytes, ota_port_update_t **out) {
    return sim_ota_update_begin(slot, image_size_bytes, (sim_ota_update_t **)out);
}
ota_status_t ota_port_update_resume(int slot, uint32_t image_size_bytes, uint32_t offset_bytes,
                                    ota_port_update_t **out) {
    return sim_ota_update_resume(slot, image_size_bytes, offset_bytes, (sim_ota_update_t **)out);
}
ota_status_t ota_port_update_write(ota_port_update_t *update, const void *data, size_t len) {
    return sim_ota_update_write((sim_ota_update_t *)update, data, len);
}
ota_status_t ota_port_update_end(ota_port_update_t *update) {
    return sim_ota_update_end((sim_ota_update_t *)update);
}
void ota_port_update_abort(ota_port_update_t *update) {
    sim_ota_update_abort((sim_ota_update_t *)update);
}
ota_status_t ota_port_set_boot_slot(int slot) {
    return sim_ota_set_boot_slot(slot);
}
ota_status_t ota_port_mark_valid(void) {
    return sim_ota_mark_valid();
}
ota_status_t ota_port_mark_invalid_and_reboot(void) {
    return sim_ota_mark_invalid_and_reboot();
}
bool ota_port_rollback_possible(void) {
    return sim_ota_rollback_possible();
}
int ota_port_last_invalid_slot(void) {
    return sim_ota_last_invalid_slot();
}
void ota_port_chip_info(uint16_t *chip_id, uint16_t *chip_rev_full) {
    sim_ota_chip_info(chip_id, chip_rev_full);
}
void esp_restart(void) {
    ota_port_reboot();
}
