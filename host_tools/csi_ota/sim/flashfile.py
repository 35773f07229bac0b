"""Flash files of the virtual ESP32-S3: create them, read and edit partitions, read otadata.

A flash file is the whole SPI NOR chip (4, 8 or 16 MiB) as the simulator maps
it (firmware/sim/flash, docs/sim.md): the binary partition table at 0x8000,
partitions at their offsets, erased bytes 0xFF. These helpers are host tools,
like ``esptool write_flash``: they set bytes directly (no NOR bit rules, no
operation counting) and every change is atomic — the new file is written next
to the old one and renamed over it, so an interrupted edit leaves the old file.
Do not edit a flash file while a simulator has it open (it maps the old inode).

The otadata partition holds two ``esp_ota_select_entry_t`` (32 bytes: ota_seq
u32, seq_label[20], ota_state u32, crc u32), one per 4 KiB sector, with
crc = crc32_le(0xFFFFFFFF, ota_seq) in the ESP ROM convention.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.partitions import Layout, PartitionEntry, flash_size_label, load_layout, parse_binary

MIB = 1024 * 1024
FLASH_SIZES_BYTES = (4 * MIB, 8 * MIB, 16 * MIB)
SECTOR_SIZE_BYTES = 4096
PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_MAX_BYTES = 0xC00
ERASED_BYTE = 0xFF

OTADATA_ENTRY = struct.Struct("<I20sII")  # ota_seq, seq_label, ota_state, crc
OTADATA_ENTRY_SIZE_BYTES = OTADATA_ENTRY.size
ERASED_U32 = 0xFFFFFFFF

# esp_ota_img_states_t
OTA_STATES = {
    "new": 0x0,
    "pending_verify": 0x1,
    "valid": 0x2,
    "invalid": 0x3,
    "aborted": 0x4,
    "undefined": 0xFFFFFFFF,
}
OTA_STATE_NAMES = {value: name for name, value in OTA_STATES.items()}

TYPE_APP = 0x00
TYPE_DATA = 0x01
SUBTYPE_DATA_OTA = 0x00


def otadata_crc(seq: int) -> int:
    """crc32_le(0xFFFFFFFF, &ota_seq, 4) as the ESP ROM computes it (seq 1 → 0x4743989A)."""
    return zlib.crc32(struct.pack("<I", seq), ERASED_U32) & ERASED_U32


def state_name(state: int) -> str:
    return OTA_STATE_NAMES.get(state, f"unknown({state:#x})")


def parse_state(text: str | int) -> int:
    """'valid' / 'pending_verify' / … or a number → the esp_ota_img_states_t value."""
    if isinstance(text, int):
        value = text
    elif text.lower() in OTA_STATES:
        return OTA_STATES[text.lower()]
    else:
        try:
            value = int(text, 0)
        except ValueError:
            raise CsiOtaError(
                f"unknown otadata state {text!r}; use one of {', '.join(OTA_STATES)} or a number"
            ) from None
    if not 0 <= value <= ERASED_U32:
        raise CsiOtaError(f"otadata state {value} does not fit in 32 bits")
    return value


@dataclass(frozen=True)
class OtadataEntry:
    """One esp_ota_select_entry_t as stored in sector ``index`` of the otadata partition."""

    index: int
    seq: int
    label: bytes
    state: int
    crc: int

    @property
    def state_name(self) -> str:
        return state_name(self.state)

    @property
    def crc_ok(self) -> bool:
        return self.crc == otadata_crc(self.seq)

    @property
    def erased(self) -> bool:
        return self.pack() == b"\xff" * OTADATA_ENTRY_SIZE_BYTES

    @property
    def usable(self) -> bool:
        """bootloader_common_ota_select_valid: CRC ok, seq not 0xFFFFFFFF, state not INVALID/ABORTED."""
        return (
            self.crc_ok
            and self.seq != ERASED_U32
            and self.state not in (OTA_STATES["invalid"], OTA_STATES["aborted"])
        )

    def slot(self, slot_count: int) -> int | None:
        """(seq − 1) mod slot_count in uint32 arithmetic — the slot this entry names."""
        if slot_count <= 0:
            return None
        return ((self.seq - 1) & ERASED_U32) % slot_count

    def pack(self) -> bytes:
        return OTADATA_ENTRY.pack(self.seq, self.label, self.state, self.crc)

    def to_dict(self, slot_count: int) -> dict[str, object]:
        return {
            "index": self.index,
            "seq": self.seq,
            "state": self.state_name,
            "state_value": self.state,
            "crc": self.crc,
            "crc_ok": self.crc_ok,
            "erased": self.erased,
            "usable": self.usable,
            "slot": self.slot(slot_count) if self.usable else None,
        }


def make_otadata_entry(
    index: int, seq: int, state: int | str, *, crc: int | None = None, label: bytes | None = None
) -> OtadataEntry:
    """An entry like esp_ota_ops writes it (label all 0xFF, correct crc unless ``crc`` is given)."""
    if index not in (0, 1):
        raise CsiOtaError(f"otadata entry index must be 0 or 1, not {index}")
    if not 0 <= seq <= ERASED_U32:
        raise CsiOtaError(f"ota_seq {seq} does not fit in 32 bits")
    label_bytes = b"\xff" * 20 if label is None else label
    if len(label_bytes) > 20:
        raise CsiOtaError("seq_label is at most 20 bytes")
    label_bytes = label_bytes.ljust(20, b"\x00")
    return OtadataEntry(index, seq, label_bytes, parse_state(state), otadata_crc(seq) if crc is None else crc)


def unpack_otadata_entry(index: int, raw: bytes) -> OtadataEntry:
    seq, label, state, crc = OTADATA_ENTRY.unpack(raw[:OTADATA_ENTRY_SIZE_BYTES])
    return OtadataEntry(index, seq, label, state, crc)


# ---------------------------------------------------------------------------- file plumbing


def _check_flash_size(size_bytes: int, where: str) -> None:
    if size_bytes not in FLASH_SIZES_BYTES:
        sizes = ", ".join(flash_size_label(s) for s in FLASH_SIZES_BYTES)
        raise CsiOtaError(f"{where}: a flash file is 4, 8 or 16 MiB ({sizes}), not {size_bytes} bytes")


def _read_flash(path: str | os.PathLike[str]) -> tuple[Path, bytearray]:
    p = Path(path)
    try:
        data = bytearray(p.read_bytes())
    except FileNotFoundError:
        raise CsiOtaError(f"{p}: no such flash file") from None
    except IsADirectoryError:
        raise CsiOtaError(f"{p}: is a directory, not a flash file") from None
    _check_flash_size(len(data), str(p))
    return p, data


def layout_of(data: bytes | bytearray, source: str = "") -> Layout:
    """The partition table stored at 0x8000 of a flash image (CsiOtaError when it is damaged)."""
    table = bytes(data[PARTITION_TABLE_OFFSET : PARTITION_TABLE_OFFSET + PARTITION_TABLE_MAX_BYTES])
    return parse_binary(table, flash_size_bytes=len(data), table_offset=PARTITION_TABLE_OFFSET, source=source)


def _find(layout: Layout, name: str, where: str) -> PartitionEntry:
    try:
        return layout.find(name)
    except KeyError:
        names = ", ".join(e.name for e in layout.entries)
        raise CsiOtaError(f"{where}: no partition {name!r} (partitions: {names})") from None


def _range_in(entry: PartitionEntry, offset: int, length: int) -> tuple[int, int]:
    if offset < 0 or length < 0 or offset + length > entry.size:
        raise CsiOtaError(
            f"bytes {offset:#x}..{offset + length:#x} are outside partition {entry.name!r} (size {entry.size:#x})"
        )
    return entry.offset + offset, entry.offset + offset + length


@contextmanager
def _edit(path: str | os.PathLike[str]) -> Iterator[tuple[bytearray, Layout, str]]:
    """Read a flash file, let the caller change the bytes, write it back atomically."""
    p, data = _read_flash(path)
    layout = layout_of(data, str(p))
    yield data, layout, str(p)
    write_atomic(p, data)


def _otadata_partition(layout: Layout, where: str) -> PartitionEntry:
    for entry in layout.entries:
        if entry.type == TYPE_DATA and entry.subtype == SUBTYPE_DATA_OTA:
            if entry.size < 2 * SECTOR_SIZE_BYTES:
                raise CsiOtaError(f"{where}: otadata partition {entry.name!r} is smaller than two sectors")
            return entry
    raise CsiOtaError(f"{where}: the partition table has no otadata partition")


# ---------------------------------------------------------------------------- public API


def _slot_entry(layout: Layout, key: int | str, where: str) -> PartitionEntry:
    if isinstance(key, int):
        for entry in layout.ota_slots():
            if entry.ota_slot == key:
                return entry
        raise CsiOtaError(f"{where}: the partition table has no ota_{key} slot")
    return _find(layout, key, where)


def create_flash_file(
    path: str | os.PathLike[str],
    *,
    flash_size_bytes: int = 4 * MIB,
    layout: Layout | None = None,
    images: Mapping[int | str, bytes] | None = None,
    nvs: bytes | None = None,
    otadata: tuple[tuple[int, int | str] | None, tuple[int, int | str] | None] | None = None,
) -> Path:
    """Write an erased chip with the partition table, app images and NVS image.

    ``layout`` defaults to the shipped layout for the flash size ("4MB", "8MB",
    "16MB"). ``images`` maps an OTA slot number (0 → ota_0) or a partition name
    to the bytes to put at its start. ``otadata`` is ``None`` (erased — a first
    boot) or two ``(seq, state)`` pairs (or ``None`` for an erased entry),
    written with correct CRCs.
    """
    out = Path(path)
    _check_flash_size(flash_size_bytes, str(out))
    chosen = layout if layout is not None else load_layout(flash_size_label(flash_size_bytes))
    table = chosen.to_binary()
    if len(table) > PARTITION_TABLE_MAX_BYTES:
        raise CsiOtaError(f"partition table is {len(table)} bytes, more than {PARTITION_TABLE_MAX_BYTES:#x}")
    data = bytearray(b"\xff" * flash_size_bytes)
    data[PARTITION_TABLE_OFFSET : PARTITION_TABLE_OFFSET + len(table)] = table
    for entry in chosen.entries:
        if entry.offset + entry.size > flash_size_bytes:
            raise CsiOtaError(
                f"partition {entry.name!r} ends at {entry.end:#x}, past the {flash_size_label(flash_size_bytes)} flash"
            )
    where = str(out)
    for key, image in (images or {}).items():
        entry = _slot_entry(chosen, key, where)
        if len(image) > entry.size:
            raise CsiOtaError(
                f"image for {entry.name} is {len(image)} bytes, the partition holds {entry.size}"
            )
        data[entry.offset : entry.offset + len(image)] = image
    if nvs is not None:
        entry = _find(chosen, "nvs", where)
        if len(nvs) > entry.size:
            raise CsiOtaError(f"NVS image is {len(nvs)} bytes, the nvs partition holds {entry.size}")
        data[entry.offset : entry.offset + len(nvs)] = nvs
    if otadata is not None:
        part = _otadata_partition(chosen, where)
        for index, spec in enumerate(otadata):
            if spec is not None:
                raw = make_otadata_entry(index, spec[0], spec[1]).pack()
                start = part.offset + index * SECTOR_SIZE_BYTES
                data[start : start + len(raw)] = raw
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, data)
    return out


def read_layout(path: str | os.PathLike[str]) -> Layout:
    p, data = _read_flash(path)
    return layout_of(data, str(p))


def read_otadata(path: str | os.PathLike[str]) -> list[OtadataEntry]:
    """Both otadata entries (sector 0, sector 1) of a flash file."""
    p, data = _read_flash(path)
    layout = layout_of(data, str(p))
    part = _otadata_partition(layout, str(p))
    return [
        unpack_otadata_entry(
            i, bytes(data[part.offset + i * SECTOR_SIZE_BYTES : part.offset + i * SECTOR_SIZE_BYTES + 32])
        )
        for i in (0, 1)
    ]


def write_otadata_entry(path: str | os.PathLike[str], entry: OtadataEntry) -> None:
    """Erase sector ``entry.index`` of otadata and store ``entry`` there (as esp_ota_ops does)."""
    with _edit(path) as (data, layout, where):
        part = _otadata_partition(layout, where)
        start = part.offset + entry.index * SECTOR_SIZE_BYTES
        data[start : start + SECTOR_SIZE_BYTES] = b"\xff" * SECTOR_SIZE_BYTES
        data[start : start + OTADATA_ENTRY_SIZE_BYTES] = entry.pack()


def read_partition(path: str | os.PathLike[str], name: str) -> bytes:
    p, data = _read_flash(path)
    entry = _find(layout_of(data, str(p)), name, str(p))
    return bytes(data[entry.offset : entry.end])


def write_partition(path: str | os.PathLike[str], name: str, data: bytes, offset: int = 0) -> None:
    """Put ``data`` at ``offset`` inside partition ``name`` (bytes set as given, like esptool write_flash)."""
    with _edit(path) as (flash, layout, where):
        start, end = _range_in(_find(layout, name, where), offset, len(data))
        flash[start:end] = data


def corrupt_partition(path: str | os.PathLike[str], name: str, offset: int, length: int) -> None:
    """Flip every bit of ``length`` bytes at ``offset`` inside partition ``name``."""
    if length <= 0:
        raise CsiOtaError(f"length must be positive, not {length}")
    with _edit(path) as (flash, layout, where):
        start, end = _range_in(_find(layout, name, where), offset, length)
        for i in range(start, end):
            flash[i] ^= 0xFF


def erase_partition(path: str | os.PathLike[str], name: str) -> None:
    """Set every byte of partition ``name`` to 0xFF."""
    with _edit(path) as (flash, layout, where):
        entry = _find(layout, name, where)
        flash[entry.offset : entry.end] = b"\xff" * entry.size


def boot_slot_count(layout: Layout) -> int:
    """OTA slots as the bootloader counts them (every ota_N partition)."""
    return len(layout.ota_slots())
