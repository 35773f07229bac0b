"""Partition table CSV, the format ESP-IDF's build reads (CONFIG_PARTITION_TABLE_CUSTOM_FILENAME).

`Name, Type, SubType, Offset, Size, Flags` per line, `#` comments. Numbers
are decimal, 0x-hex, or carry a K/M suffix; an empty offset means "right after
the previous partition, aligned for its type", as gen_esp32part does.
"""

from __future__ import annotations

from csi_ota.errors import CsiOtaError
from csi_ota.partitions.model import (
    DEFAULT_TABLE_OFFSET,
    FLAG_BITS,
    OFFSET_ALIGNMENT_BYTES,
    SUBTYPE_NAMES,
    TABLE_SECTOR_BYTES,
    TYPE_APP,
    TYPE_DATA,
    TYPE_NAMES,
    Layout,
    PartitionEntry,
)

CSV_COLUMNS = ("Name", "Type", "SubType", "Offset", "Size", "Flags")
SIZE_SUFFIXES = {"k": 1024, "m": 1024 * 1024}
DATA_SUBTYPE_UNDEFINED = 0x06


def parse_number(text: str, keywords: dict[str, int] | None = None) -> int:
    """'0x1000', '4096', '64K', '1M', or a keyword; ValueError with the reason otherwise."""
    value = text.strip()
    if not value:
        raise ValueError("empty value")
    suffix = value[-1].lower()
    try:
        if suffix in SIZE_SUFFIXES and len(value) > 1:
            return int(value[:-1], 0) * SIZE_SUFFIXES[suffix]
        return int(value, 0)
    except ValueError:
        pass
    if keywords and value.lower() in keywords:
        return keywords[value.lower()]
    if keywords:
        raise ValueError(f"{value!r} is neither a number nor one of: {', '.join(keywords)}")
    raise ValueError(f"{value!r} is not a number")


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def parse_flags(text: str) -> int:
    flags = 0
    for name in (f.strip() for f in text.split(":")):
        if not name:
            continue
        if name not in FLAG_BITS:
            raise ValueError(f"unknown flag {name!r}; known flags: {', '.join(FLAG_BITS)}")
        flags |= 1 << FLAG_BITS[name]
    return flags


def parse_csv(
    text: str,
    *,
    flash_size_bytes: int | None = None,
    table_offset: int = DEFAULT_TABLE_OFFSET,
    source: str = "",
) -> Layout:
    """Parse CSV text into a Layout (fills in empty offsets). Does not validate rules."""
    where = f"{source}:" if source else "line "
    entries: list[PartitionEntry] = []
    next_free = table_offset + TABLE_SECTOR_BYTES
    for line_no, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if "$" in line:
            raise CsiOtaError(f"{where}{line_no}: variables ($NAME) are not supported in csi-ota tables")
        fields = [f.strip() for f in (line + ",,,,,").split(",")]
        name, type_text, subtype_text, offset_text, size_text, flags_text = fields[:6]
        if any(f for f in fields[6:]):
            raise CsiOtaError(f"{where}{line_no}: more than {len(CSV_COLUMNS)} columns")
        try:
            if not type_text:
                raise ValueError("the Type column is empty")
            ptype = parse_number(type_text, TYPE_NAMES)
            if subtype_text:
                subtype = parse_number(subtype_text, SUBTYPE_NAMES.get(ptype, {}))
            elif ptype == TYPE_APP:
                raise ValueError("an app partition needs a SubType")
            else:
                subtype = DATA_SUBTYPE_UNDEFINED
            if not size_text:
                raise ValueError("the Size column is empty")
            size = parse_number(size_text)
            if offset_text:
                offset = parse_number(offset_text)
            else:
                offset = align_up(
                    next_free, OFFSET_ALIGNMENT_BYTES.get(ptype, OFFSET_ALIGNMENT_BYTES[TYPE_DATA])
                )
            flags = parse_flags(flags_text)
        except ValueError as exc:
            label = f" ({name})" if name else ""
            raise CsiOtaError(f"{where}{line_no}{label}: {exc}") from exc
        entries.append(PartitionEntry(name, ptype, subtype, offset, size, flags))
        next_free = offset + size
    if not entries:
        raise CsiOtaError(f"{source or 'CSV'}: no partitions found")
    return Layout(tuple(entries), flash_size_bytes=flash_size_bytes, table_offset=table_offset, source=source)


def render_csv(layout: Layout, header: str = "") -> str:
    """CSV with explicit hex offsets and sizes, columns aligned; parse_csv(render_csv(x)) == x."""
    rows = [
        [e.name, e.type_name, e.subtype_name, f"{e.offset:#x}", f"{e.size:#x}", ":".join(e.flag_names)]
        for e in layout.entries
    ]
    titles = ["# " + CSV_COLUMNS[0], *CSV_COLUMNS[1:]]
    widths = [max([len(titles[i])] + [len(r[i]) for r in rows]) for i in range(5)]
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for cells in (titles, *rows):
        lines.append(
            ("".join(f"{cell},".ljust(widths[i] + 2) for i, cell in enumerate(cells[:5])) + cells[5]).rstrip()
        )
    return "\n".join(lines) + "\n"
