"""The partition table model and ESP-IDF's type/subtype tables.

Names and numbers follow ESP-IDF v6 components/partition_table/gen_esp32part.py
and esp_partition.h (esp_partition_type_t / esp_partition_subtype_t).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KIB = 1024
MIB = 1024 * 1024

# Where ESP-IDF puts the table by default (CONFIG_PARTITION_TABLE_OFFSET) and
# how much flash it occupies: one 4 KB sector.
DEFAULT_TABLE_OFFSET = 0x8000
TABLE_SECTOR_BYTES = 0x1000

TYPE_APP = 0x00
TYPE_DATA = 0x01
TYPE_BOOTLOADER = 0x02
TYPE_PARTITION_TABLE = 0x03

TYPE_NAMES = {
    "app": TYPE_APP,
    "data": TYPE_DATA,
    "bootloader": TYPE_BOOTLOADER,
    "partition_table": TYPE_PARTITION_TABLE,
}

SUBTYPE_OTA_0 = 0x10
OTA_SLOT_COUNT_MAX = 16
SUBTYPE_TEE_0 = 0x30

APP_SUBTYPE_NAMES = {
    "factory": 0x00,
    **{f"ota_{slot}": SUBTYPE_OTA_0 + slot for slot in range(OTA_SLOT_COUNT_MAX)},
    "test": 0x20,
    "tee_0": SUBTYPE_TEE_0,
    "tee_1": SUBTYPE_TEE_0 + 1,
}

DATA_SUBTYPE_OTA = 0x00
DATA_SUBTYPE_NVS = 0x02
DATA_SUBTYPE_COREDUMP = 0x03

DATA_SUBTYPE_NAMES = {
    "ota": DATA_SUBTYPE_OTA,
    "phy": 0x01,
    "nvs": DATA_SUBTYPE_NVS,
    "coredump": DATA_SUBTYPE_COREDUMP,
    "nvs_keys": 0x04,
    "efuse": 0x05,
    "undefined": 0x06,
    "esphttpd": 0x80,
    "fat": 0x81,
    "spiffs": 0x82,
    "littlefs": 0x83,
    "tee_ota": 0x90,
}

SUBTYPE_NAMES = {
    TYPE_APP: APP_SUBTYPE_NAMES,
    TYPE_DATA: DATA_SUBTYPE_NAMES,
    TYPE_BOOTLOADER: {"primary": 0x00, "ota": 0x01, "recovery": 0x02},
    TYPE_PARTITION_TABLE: {"primary": 0x00, "ota": 0x01},
}

# Offset alignment per type (gen_esp32part ALIGNMENT); app sizes must be 4 KB multiples.
OFFSET_ALIGNMENT_BYTES = {
    TYPE_APP: 0x10000,
    TYPE_DATA: 0x1000,
    TYPE_BOOTLOADER: 0x1000,
    TYPE_PARTITION_TABLE: 0x1000,
}
APP_SIZE_ALIGNMENT_BYTES = 0x1000

# Flag bits of the 32-bit flags word.
FLAG_BITS = {"encrypted": 0, "readonly": 1}

NAME_FIELD_BYTES = 16
OTADATA_SIZE_BYTES = 0x2000
NVS_READ_WRITE_MIN_SIZE_BYTES = 0x3000

FLASH_SIZES_BYTES = {f"{n}MB": n * MIB for n in (1, 2, 4, 8, 16, 32, 64, 128)}


def type_name(ptype: int) -> str:
    for name, value in TYPE_NAMES.items():
        if value == ptype:
            return name
    return f"{ptype:#04x}"


def subtype_name(ptype: int, subtype: int) -> str:
    for name, value in SUBTYPE_NAMES.get(ptype, {}).items():
        if value == subtype:
            return name
    return f"{subtype:#04x}"


def parse_flash_size(text: str) -> int:
    """'4MB' → 4194304; raises ValueError naming the accepted sizes."""
    key = text.strip().upper().replace(" ", "")
    if key.endswith("M"):
        key += "B"
    if key not in FLASH_SIZES_BYTES:
        raise ValueError(f"unknown flash size {text!r}; use one of {', '.join(FLASH_SIZES_BYTES)}")
    return FLASH_SIZES_BYTES[key]


def flash_size_label(size_bytes: int) -> str:
    for label, value in FLASH_SIZES_BYTES.items():
        if value == size_bytes:
            return label
    return f"{size_bytes} bytes"


@dataclass(frozen=True)
class PartitionEntry:
    """One row of the table. ``flags`` is the raw 32-bit word (unknown bits kept)."""

    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def subtype_name(self) -> str:
        return subtype_name(self.type, self.subtype)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & (1 << FLAG_BITS["encrypted"]))

    @property
    def readonly(self) -> bool:
        return bool(self.flags & (1 << FLAG_BITS["readonly"]))

    @property
    def flag_names(self) -> list[str]:
        return [name for name, bit in FLAG_BITS.items() if self.flags & (1 << bit)]

    @property
    def ota_slot(self) -> int | None:
        """0 for ota_0 … 15 for ota_15, None for anything else."""
        if self.type == TYPE_APP and SUBTYPE_OTA_0 <= self.subtype < SUBTYPE_OTA_0 + OTA_SLOT_COUNT_MAX:
            return self.subtype - SUBTYPE_OTA_0
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type_name,
            "subtype": self.subtype_name,
            "offset": self.offset,
            "size": self.size,
            "flags": self.flag_names,
        }


@dataclass(frozen=True)
class Layout:
    """A partition table: entries in table order, plus where it lives.

    ``flash_size_bytes`` is None when unknown (a CSV or binary read without a
    flash size); the "fits in flash" rule is then skipped.
    """

    entries: tuple[PartitionEntry, ...]
    flash_size_bytes: int | None = None
    table_offset: int = DEFAULT_TABLE_OFFSET
    source: str = field(default="", compare=False)

    def find(self, name: str) -> PartitionEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def ota_slots(self) -> list[PartitionEntry]:
        """OTA app partitions ordered by slot number."""
        slots = [e for e in self.entries if e.ota_slot is not None]
        return sorted(slots, key=lambda e: e.subtype)

    def smallest_ota_slot(self) -> PartitionEntry | None:
        slots = self.ota_slots()
        return min(slots, key=lambda e: (e.size, e.subtype)) if slots else None

    def used_end(self) -> int:
        return max((e.end for e in self.entries), default=self.table_offset + TABLE_SECTOR_BYTES)

    def to_csv(self, header: str = "") -> str:
        from csi_ota.partitions.csvfmt import render_csv

        return render_csv(self, header=header)

    def to_binary(self) -> bytes:
        from csi_ota.partitions.binary import render_binary

        return render_binary(self)

    def validate(self) -> None:
        from csi_ota.partitions.rules import validate_layout

        validate_layout(self)

    def to_dict(self) -> dict[str, object]:
        return {
            "flash_size_bytes": self.flash_size_bytes,
            "table_offset": self.table_offset,
            "partitions": [e.to_dict() for e in self.entries],
        }
