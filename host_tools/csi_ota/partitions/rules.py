"""Partition table rules, one row each: ESP-IDF's gen_esp32part checks plus the OTA ones.

Every rule returns the violations it finds; :func:`validate_layout` runs them
all and raises one :class:`CsiOtaError` (exit code 2) that names, for each
violation, the partition and the rule it breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from csi_ota.errors import CsiOtaError
from csi_ota.partitions.model import (
    APP_SIZE_ALIGNMENT_BYTES,
    DATA_SUBTYPE_COREDUMP,
    DATA_SUBTYPE_NVS,
    DATA_SUBTYPE_OTA,
    FLAG_BITS,
    NAME_FIELD_BYTES,
    NVS_READ_WRITE_MIN_SIZE_BYTES,
    OFFSET_ALIGNMENT_BYTES,
    OTADATA_SIZE_BYTES,
    TABLE_SECTOR_BYTES,
    TYPE_APP,
    TYPE_BOOTLOADER,
    TYPE_DATA,
    TYPE_PARTITION_TABLE,
    Layout,
    PartitionEntry,
)

# 0xC00 bytes of table = 96 slots of 32 bytes; the MD5 entry takes one and
# gen_esp32part refuses a table whose entries + MD5 reach 0xC00 (no room for
# the end marker), so 94 partitions is the most that builds.
MAX_ENTRY_COUNT = 94
KNOWN_FLAGS_MASK = sum(1 << bit for bit in FLAG_BITS.values())


@dataclass(frozen=True)
class Violation:
    partition: str
    rule: str
    detail: str

    def __str__(self) -> str:
        who = f"partition '{self.partition}'" if self.partition else "a partition"
        return f"{who} breaks rule {self.rule}: {self.detail}"


def _is_table_or_bootloader(e: PartitionEntry) -> bool:
    return e.type in (TYPE_BOOTLOADER, TYPE_PARTITION_TABLE)


def _name_rules(layout: Layout) -> list[Violation]:
    out = []
    for index, e in enumerate(layout.entries, start=1):
        raw = e.name.encode("utf-8")
        if not raw:
            out.append(Violation("", "name-required", f"entry {index} (at {e.offset:#x}) has no name"))
        elif len(raw) > NAME_FIELD_BYTES:
            out.append(
                Violation(
                    e.name, "name-length", f"name is {len(raw)} bytes, the table holds {NAME_FIELD_BYTES}"
                )
            )
        elif not raw.isascii() or any(c < 0x21 for c in raw) or b"," in raw:
            out.append(Violation(e.name, "name-characters", "use printable ASCII without spaces or commas"))
    return out


def _unique_names(layout: Layout) -> list[Violation]:
    seen: set[str] = set()
    out = []
    for e in layout.entries:
        if e.name in seen:
            out.append(Violation(e.name, "unique-names", "another partition already has this name"))
        seen.add(e.name)
    return out


def _type_range(layout: Layout) -> list[Violation]:
    out = []
    for e in layout.entries:
        if not 0 <= e.type <= 0xFE:
            out.append(Violation(e.name, "type-range", f"type {e.type:#x} is outside 0x00-0xfe"))
        if not 0 <= e.subtype <= 0xFE:
            out.append(Violation(e.name, "subtype-range", f"subtype {e.subtype:#x} is outside 0x00-0xfe"))
    return out


def _size_positive(layout: Layout) -> list[Violation]:
    return [
        Violation(e.name, "size-positive", f"size {e.size:#x} must be greater than zero")
        for e in layout.entries
        if e.size <= 0
    ]


def _offset_alignment(layout: Layout) -> list[Violation]:
    out = []
    for e in layout.entries:
        align = OFFSET_ALIGNMENT_BYTES.get(e.type, OFFSET_ALIGNMENT_BYTES[TYPE_DATA])
        if e.offset % align:
            kind = "app" if e.type == TYPE_APP else "data"
            out.append(
                Violation(
                    e.name,
                    f"{kind}-offset-alignment",
                    f"offset {e.offset:#x} is not a multiple of {align:#x}",
                )
            )
    return out


def _app_size_alignment(layout: Layout) -> list[Violation]:
    return [
        Violation(
            e.name,
            "app-size-alignment",
            f"size {e.size:#x} is not a multiple of {APP_SIZE_ALIGNMENT_BYTES:#x} (one flash sector)",
        )
        for e in layout.entries
        if e.type == TYPE_APP and e.size % APP_SIZE_ALIGNMENT_BYTES
    ]


def _after_table(layout: Layout) -> list[Violation]:
    first_free = layout.table_offset + TABLE_SECTOR_BYTES
    return [
        Violation(
            e.name,
            "after-table",
            f"offset {e.offset:#x} is below {first_free:#x}, where the partition table sector ends",
        )
        for e in layout.entries
        if e.offset < first_free and not _is_table_or_bootloader(e)
    ]


def _no_overlap(layout: Layout) -> list[Violation]:
    out = []
    ordered = sorted(layout.entries, key=lambda e: e.offset)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.offset < before.end:
            out.append(
                Violation(
                    after.name,
                    "no-overlap",
                    f"{after.offset:#x}-{after.end - 1:#x} overlaps '{before.name}' "
                    f"at {before.offset:#x}-{before.end - 1:#x}",
                )
            )
    return out


def _otadata_rules(layout: Layout) -> list[Violation]:
    otadata = [e for e in layout.entries if e.type == TYPE_DATA and e.subtype == DATA_SUBTYPE_OTA]
    out = [
        Violation(e.name, "single-otadata", "only one data/ota (otadata) partition is allowed")
        for e in otadata[1:]
    ]
    out += [
        Violation(
            e.name, "otadata-size", f"otadata must be exactly {OTADATA_SIZE_BYTES:#x} bytes, not {e.size:#x}"
        )
        for e in otadata
        if e.size != OTADATA_SIZE_BYTES
    ]
    if layout.ota_slots() and not otadata:
        first = layout.ota_slots()[0]
        out.append(
            Violation(
                first.name,
                "ota-needs-otadata",
                "OTA app slots need a data/ota partition to pick the boot slot",
            )
        )
    return out


def _ota_contiguous(layout: Layout) -> list[Violation]:
    out = []
    slots = layout.ota_slots()
    seen: set[int] = set()
    for e in slots:
        assert e.ota_slot is not None
        if e.ota_slot in seen:
            out.append(Violation(e.name, "unique-ota-slot", f"another partition is already ota_{e.ota_slot}"))
        seen.add(e.ota_slot)
    for e in slots:
        assert e.ota_slot is not None
        missing = [n for n in range(e.ota_slot) if n not in seen]
        if missing:
            out.append(
                Violation(
                    e.name,
                    "ota-contiguous",
                    f"ota_{e.ota_slot} without ota_{missing[0]}: the app counts slots up to the first gap, "
                    "so this slot could never be booted",
                )
            )
    return out


def _always_writable(layout: Layout) -> list[Violation]:
    return [
        Violation(
            e.name, "read-write-only", f"data/{e.subtype_name} is always written at run time, drop 'readonly'"
        )
        for e in layout.entries
        if e.type == TYPE_DATA and e.subtype in (DATA_SUBTYPE_OTA, DATA_SUBTYPE_COREDUMP) and e.readonly
    ]


def _nvs_minimum(layout: Layout) -> list[Violation]:
    return [
        Violation(
            e.name,
            "nvs-min-size",
            f"read/write NVS needs at least {NVS_READ_WRITE_MIN_SIZE_BYTES:#x} bytes, has {e.size:#x}",
        )
        for e in layout.entries
        if e.type == TYPE_DATA
        and e.subtype == DATA_SUBTYPE_NVS
        and e.size < NVS_READ_WRITE_MIN_SIZE_BYTES
        and not e.readonly
    ]


def _known_flags(layout: Layout) -> list[Violation]:
    return [
        Violation(e.name, "known-flags", f"unknown flag bits {e.flags & ~KNOWN_FLAGS_MASK:#x}")
        for e in layout.entries
        if e.flags & ~KNOWN_FLAGS_MASK
    ]


def _entry_count(layout: Layout) -> list[Violation]:
    if len(layout.entries) > MAX_ENTRY_COUNT:
        return [
            Violation(
                layout.entries[MAX_ENTRY_COUNT].name,
                "max-entries",
                f"{len(layout.entries)} partitions; the 0xC00-byte table holds at most {MAX_ENTRY_COUNT} "
                "plus its MD5 entry and end marker",
            )
        ]
    return []


def _fits_flash(layout: Layout) -> list[Violation]:
    if layout.flash_size_bytes is None:
        return []
    return [
        Violation(
            e.name,
            "fits-flash",
            f"ends at {e.end:#x}, beyond the {layout.flash_size_bytes // (1024 * 1024)} MB "
            f"({layout.flash_size_bytes:#x}) flash",
        )
        for e in layout.entries
        if e.end > layout.flash_size_bytes
    ]


# (rule id(s), what it protects) — the order violations are reported in.
RULES: tuple[tuple[str, str, Callable[[Layout], list[Violation]]], ...] = (
    ("name-required/name-length/name-characters", "names fit the 16-byte label field", _name_rules),
    ("unique-names", "partitions are found by name", _unique_names),
    ("type-range/subtype-range", "types and subtypes fit one byte (0xff is the erased value)", _type_range),
    ("size-positive", "every partition has a size", _size_positive),
    (
        "app-offset-alignment/data-offset-alignment",
        "apps start on 64 KB MMU pages, data on 4 KB",
        _offset_alignment,
    ),
    ("app-size-alignment", "app partitions are whole flash sectors", _app_size_alignment),
    ("after-table", "nothing overwrites the partition table sector", _after_table),
    ("no-overlap", "partitions do not share flash", _no_overlap),
    ("single-otadata/otadata-size/ota-needs-otadata", "otadata is one 0x2000-byte partition", _otadata_rules),
    ("unique-ota-slot/ota-contiguous", "OTA slots run ota_0, ota_1, … without gaps", _ota_contiguous),
    ("read-write-only", "otadata and coredump are written at run time", _always_writable),
    ("nvs-min-size", "read/write NVS needs three sectors", _nvs_minimum),
    ("known-flags", "only the encrypted and readonly flags exist", _known_flags),
    ("max-entries", "the table fits its 0xC00 bytes", _entry_count),
    ("fits-flash", "everything is inside the flash chip", _fits_flash),
)


def find_violations(layout: Layout) -> list[Violation]:
    out: list[Violation] = []
    for _ids, _why, check in RULES:
        out.extend(check(layout))
    return out


def validate_layout(layout: Layout) -> None:
    """Raise CsiOtaError (exit 2) listing every violation; return quietly when the table is valid."""
    violations = find_violations(layout)
    if violations:
        where = f" in {layout.source}" if layout.source else ""
        lines = "\n".join(f"  - {v}" for v in violations)
        raise CsiOtaError(f"invalid partition table{where}:\n{lines}")
