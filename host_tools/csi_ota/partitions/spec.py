"""Declarative layout specs (TOML) → Layout, and loading any table file.

A spec names the flash size and lists partitions in flash order; offsets may
be left out (placed right after the previous partition, aligned for the
type) and the last size may be ``"rest"`` (everything up to the end of
flash). Shipped specs live in csi_ota/data/layouts/<size>.toml; a user file
passed with ``--spec`` replaces them. docs/partitions.md describes the format.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from csi_ota.errors import CsiOtaError
from csi_ota.partitions.binary import ENTRY_MAGIC, parse_binary
from csi_ota.partitions.csvfmt import align_up, parse_csv, parse_flags, parse_number
from csi_ota.partitions.model import (
    DEFAULT_TABLE_OFFSET,
    OFFSET_ALIGNMENT_BYTES,
    SUBTYPE_NAMES,
    TABLE_SECTOR_BYTES,
    TYPE_DATA,
    TYPE_NAMES,
    Layout,
    PartitionEntry,
    parse_flash_size,
)

DEFAULT_FLASH_SIZE = "4MB"
SHIPPED_LAYOUTS = ("4MB", "8MB", "16MB")
SPEC_KEYS = {"description", "flash_size", "table_offset", "partitions"}
PARTITION_KEYS = {"name", "type", "subtype", "offset", "size", "flags", "comment"}
REST_OF_FLASH = "rest"


def shipped_spec_path(flash_size: str) -> Path:
    label = flash_size.strip().upper()
    if label not in SHIPPED_LAYOUTS:
        raise CsiOtaError(f"no shipped layout for {flash_size!r}; shipped: {', '.join(SHIPPED_LAYOUTS)}")
    return Path(str(resources.files("csi_ota").joinpath("data", "layouts", f"{label}.toml")))


def _number(value: Any, what: str, keywords: dict[str, int] | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_number(value, keywords)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from exc
    raise ValueError(f"{what} must be a number or a string like '0x1000' / '64K'")


def layout_from_spec(spec: dict[str, Any], *, source: str = "") -> Layout:
    """Build (and validate) a Layout from a parsed spec dictionary."""
    where = source or "layout spec"
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise CsiOtaError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(SPEC_KEYS))}"
        )
    try:
        flash_size_bytes = parse_flash_size(str(spec.get("flash_size", DEFAULT_FLASH_SIZE)))
        table_offset = _number(spec.get("table_offset", DEFAULT_TABLE_OFFSET), "table_offset")
    except ValueError as exc:
        raise CsiOtaError(f"{where}: {exc}") from exc
    rows = spec.get("partitions")
    if not isinstance(rows, list) or not rows:
        raise CsiOtaError(f"{where}: needs a non-empty list of partitions (one TOML table per partition)")

    entries: list[PartitionEntry] = []
    next_free = table_offset + TABLE_SECTOR_BYTES
    for index, row in enumerate(rows):
        label = row.get("name", f"#{index + 1}") if isinstance(row, dict) else f"#{index + 1}"
        try:
            if not isinstance(row, dict):
                raise ValueError("each partitions entry must be a TOML table")
            unknown = set(row) - PARTITION_KEYS
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
            for key in ("name", "type", "subtype", "size"):
                if key not in row:
                    raise ValueError(f"missing '{key}'")
            name = str(row["name"])
            ptype = _number(row["type"], "type", TYPE_NAMES)
            subtype = _number(row["subtype"], "subtype", SUBTYPE_NAMES.get(ptype, {}))
            if "offset" in row:
                offset = _number(row["offset"], "offset")
            else:
                offset = align_up(
                    next_free, OFFSET_ALIGNMENT_BYTES.get(ptype, OFFSET_ALIGNMENT_BYTES[TYPE_DATA])
                )
            if row["size"] == REST_OF_FLASH:
                if index != len(rows) - 1:
                    raise ValueError("size = 'rest' is only allowed for the last partition")
                size = flash_size_bytes - offset
            else:
                size = _number(row["size"], "size")
            flags_value = row.get("flags", [])
            flags = parse_flags(":".join(flags_value) if isinstance(flags_value, list) else str(flags_value))
        except ValueError as exc:
            raise CsiOtaError(f"{where}: partition '{label}': {exc}") from exc
        entries.append(PartitionEntry(name, ptype, subtype, offset, size, flags))
        next_free = offset + size
    layout = Layout(
        tuple(entries), flash_size_bytes=flash_size_bytes, table_offset=table_offset, source=where
    )
    layout.validate()
    return layout


def load_spec(path: str | Path) -> Layout:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CsiOtaError(f"cannot read layout spec {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CsiOtaError(f"layout spec {path} is not UTF-8 text") from exc
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CsiOtaError(f"layout spec {path} is not valid TOML: {exc}") from exc
    return layout_from_spec(spec, source=str(path))


def load_table(
    path: str | Path,
    *,
    flash_size_bytes: int | None = None,
    validate: bool = True,
    table_offset: int = DEFAULT_TABLE_OFFSET,
) -> Layout:
    """Read a CSV or binary partition table file (detected by content).

    ``table_offset`` is CONFIG_PARTITION_TABLE_OFFSET: where empty CSV offsets start and what
    the after-table rule checks.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsiOtaError(f"cannot read partition table {path}: {exc.strerror or exc}") from exc
    if data[:2] == ENTRY_MAGIC or data[:2] == b"\xeb\xeb":
        layout = parse_binary(
            data, flash_size_bytes=flash_size_bytes, table_offset=table_offset, source=str(path)
        )
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CsiOtaError(f"{path} is neither a binary partition table nor a UTF-8 CSV") from exc
        layout = parse_csv(
            text, flash_size_bytes=flash_size_bytes, table_offset=table_offset, source=str(path)
        )
    if validate:
        layout.validate()
    return layout


def load_layout(name_or_path: str | Path = DEFAULT_FLASH_SIZE, *, flash_size: str | None = None) -> Layout:
    """A validated Layout from a shipped size ('4MB', '8MB', '16MB'), a TOML spec, a CSV or a binary table.

    ``flash_size`` sets the flash size for CSV/binary input (which does not record it).
    """
    text = str(name_or_path)
    if text.strip().upper() in SHIPPED_LAYOUTS and not Path(text).exists():
        return load_spec(shipped_spec_path(text))
    path = Path(text)
    if not path.exists() and re.fullmatch(r"\d+\s*MB?", text.strip(), re.IGNORECASE):
        shipped_spec_path(text)  # raises: "no shipped layout for '2MB'; shipped: 4MB, 8MB, 16MB"
    if path.suffix.lower() == ".toml":
        layout = load_spec(path)
        if flash_size is not None:
            layout = replace(layout, flash_size_bytes=_flash_size_or_error(flash_size))
            layout.validate()
        return layout
    size = _flash_size_or_error(flash_size) if flash_size is not None else None
    return load_table(path, flash_size_bytes=size)


def _flash_size_or_error(flash_size: str) -> int:
    try:
        return parse_flash_size(flash_size)
    except ValueError as exc:
        raise CsiOtaError(str(exc)) from exc


def default_layout() -> Layout:
    """The shipped 4 MB layout (nvs, otadata, phy_init, ota_0/ota_1 of 0x140000, spiffs)."""
    return load_layout(DEFAULT_FLASH_SIZE)
