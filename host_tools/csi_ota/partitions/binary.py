"""The binary partition table, byte for byte as ESP-IDF's bootloader reads it.

0xC00 bytes: 32-byte entries (magic 0x50AA little-endian, type, subtype,
offset, size, name[16], flags), then an MD5 entry (0xEBEB, 14 × 0xFF, MD5 of
all entries before it), then 0xFF up to 0xC00.
"""

from __future__ import annotations

import hashlib
import struct

from csi_ota.errors import CsiOtaError
from csi_ota.partitions.model import DEFAULT_TABLE_OFFSET, Layout, PartitionEntry

ENTRY_STRUCT = struct.Struct("<2sBBII16sI")
ENTRY_SIZE_BYTES = ENTRY_STRUCT.size  # 32
ENTRY_MAGIC = b"\xaa\x50"
MD5_ENTRY_PREFIX = b"\xeb\xeb" + b"\xff" * 14
END_MARKER = b"\xff" * ENTRY_SIZE_BYTES
TABLE_MAX_BYTES = 0xC00

assert ENTRY_SIZE_BYTES == 32


def pack_entry(entry: PartitionEntry) -> bytes:
    return ENTRY_STRUCT.pack(
        ENTRY_MAGIC,
        entry.type,
        entry.subtype,
        entry.offset,
        entry.size,
        entry.name.encode("utf-8"),
        entry.flags,
    )


def render_binary(layout: Layout) -> bytes:
    """The 0xC00-byte table; validates first so no invalid table is ever written."""
    layout.validate()
    entries = b"".join(pack_entry(e) for e in layout.entries)
    table = entries + MD5_ENTRY_PREFIX + hashlib.md5(entries).digest()
    if len(table) >= TABLE_MAX_BYTES:  # unreachable after validate(); kept as a guard
        raise CsiOtaError(f"partition table is {len(table)} bytes, the limit is {TABLE_MAX_BYTES - 1}")
    return table + b"\xff" * (TABLE_MAX_BYTES - len(table))


def parse_binary(
    data: bytes,
    *,
    flash_size_bytes: int | None = None,
    table_offset: int = DEFAULT_TABLE_OFFSET,
    source: str = "",
) -> Layout:
    """Parse a binary table (CsiOtaError with the reason when it is damaged). Does not validate rules."""
    where = f" {source}" if source else ""
    if len(data) < ENTRY_SIZE_BYTES:
        raise CsiOtaError(f"partition table{where} is {len(data)} bytes, too short for one entry")
    md5 = hashlib.md5()
    entries: list[PartitionEntry] = []
    md5_seen = False
    for pos in range(0, min(len(data), TABLE_MAX_BYTES), ENTRY_SIZE_BYTES):
        raw = data[pos : pos + ENTRY_SIZE_BYTES]
        if len(raw) < ENTRY_SIZE_BYTES:
            break
        if raw == END_MARKER:
            return Layout(
                tuple(entries), flash_size_bytes=flash_size_bytes, table_offset=table_offset, source=source
            )
        if raw[:2] == MD5_ENTRY_PREFIX[:2]:
            if raw[:16] != MD5_ENTRY_PREFIX or raw[16:] != md5.digest():
                raise CsiOtaError(
                    f"partition table{where}: MD5 entry at byte {pos:#x} does not match the entries "
                    f"(computed {md5.hexdigest()}, stored {raw[16:].hex()}) — the table is damaged"
                )
            md5_seen = True
            continue
        if md5_seen:
            raise CsiOtaError(f"partition table{where}: entry at byte {pos:#x} follows the MD5 entry")
        magic, ptype, subtype, offset, size, name_raw, flags = ENTRY_STRUCT.unpack(raw)
        if magic != ENTRY_MAGIC:
            raise CsiOtaError(
                f"partition table{where}: entry at byte {pos:#x} has magic {magic.hex()}, expected aa50 "
                "(not an ESP-IDF partition table?)"
            )
        name_bytes = name_raw.split(b"\x00", 1)[0]
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CsiOtaError(
                f"partition table{where}: entry at byte {pos:#x} has a name that is not text"
            ) from exc
        md5.update(raw)
        entries.append(PartitionEntry(name, ptype, subtype, offset, size, flags))
    raise CsiOtaError(f"partition table{where} has no end-of-table marker within {TABLE_MAX_BYTES:#x} bytes")
