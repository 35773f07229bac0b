"""A Python reference of the ESP-IDF bootloader's otadata step (bootloader_utility.c).

Written independently of the C model (firmware/sim/flash/src/sim_bootloader.c)
so that tests can compare the two on random otadata states, and so that
``csi-ota sim otadata`` can say which slot the next boot starts from.
Rules are numbered as in ../shared/design/esp-idf-otadata-behaviour.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from csi_ota.sim.flashfile import ERASED_U32, OTA_STATES, OtadataEntry

FACTORY_INDEX = -1
PENDING_VERIFY = OTA_STATES["pending_verify"]
ABORTED = OTA_STATES["aborted"]
INVALID = OTA_STATES["invalid"]
NEW = OTA_STATES["new"]


@dataclass(frozen=True)
class BootSelection:
    """What the bootloader decides before it loads an image."""

    start_index: int  # an OTA slot, or FACTORY_INDEX (factory app, else "try every slot")
    active_entry: int | None
    entries: tuple[OtadataEntry, OtadataEntry]  # otadata as the boot leaves it before loading
    rewritten: tuple[bool, bool]  # entries the boot erases and writes again
    initial_write: bool  # an OTA slot that loads gets seq = slot + 1, VALID in sector 0 (rule 1)


def _invalid(entry: OtadataEntry) -> bool:
    """bootloader_common_ota_select_invalid: no CRC check."""
    return entry.seq == ERASED_U32 or entry.state in (INVALID, ABORTED)


def _usable(entry: OtadataEntry) -> bool:
    return not _invalid(entry) and entry.crc_ok


def _initial_or_bad_crc(entry: OtadataEntry) -> bool:
    return entry.seq == ERASED_U32 or not entry.crc_ok


def active_entry(entries: tuple[OtadataEntry, OtadataEntry] | list[OtadataEntry]) -> int | None:
    """The usable entry with the higher seq; entry 0 on a tie (rule 14); None if neither is usable."""
    usable = [_usable(e) for e in entries]
    if usable[0] and usable[1]:
        return 0 if entries[0].seq >= entries[1].seq else 1
    for i in (0, 1):
        if usable[i]:
            return i
    return None


def select(
    entries: tuple[OtadataEntry, OtadataEntry] | list[OtadataEntry],
    ota_count: int,
    *,
    factory_present: bool = False,
    rollback_enabled: bool = True,
) -> BootSelection:
    """bootloader_utility_get_selected_boot_partition for two otadata entries."""
    current = list(entries)
    rewritten = [False, False]
    if rollback_enabled:  # rule 4: every PENDING_VERIFY, whatever its CRC, becomes ABORTED
        for i, entry in enumerate(current):
            if entry.state == PENDING_VERIFY:
                current[i] = replace(entry, state=ABORTED)
                rewritten[i] = True
    if (_invalid(current[0]) and _invalid(current[1])) or ota_count == 0:
        if factory_present:
            return BootSelection(
                FACTORY_INDEX, None, (current[0], current[1]), (rewritten[0], rewritten[1]), False
            )
        initial = _initial_or_bad_crc(current[0]) and _initial_or_bad_crc(current[1])  # rules 1, 2
        return BootSelection(0, None, (current[0], current[1]), (rewritten[0], rewritten[1]), initial)
    active = active_entry(current)
    if active is None:
        return BootSelection(
            FACTORY_INDEX, None, (current[0], current[1]), (rewritten[0], rewritten[1]), False
        )
    slot = ((current[active].seq - 1) & ERASED_U32) % ota_count  # rule 3: seq 0 → last slot
    if rollback_enabled and current[active].state == NEW:  # rule 5: before the image is checked
        current[active] = replace(current[active], state=PENDING_VERIFY)
        rewritten[active] = True
    return BootSelection(slot, active, (current[0], current[1]), (rewritten[0], rewritten[1]), False)


def boot_order(start_index: int, ota_count: int, factory_present: bool) -> list[int]:
    """Indices tried in order: start down to the factory app, then upwards (rule 6's fallback)."""
    order = [i for i in range(start_index, FACTORY_INDEX - 1, -1) if i >= 0 or factory_present]
    order += list(range(start_index + 1, ota_count))
    return order
