"""esp_app_desc_t: the 256-byte application description at image offset 0x20.

Layout from ESP-IDF v6 components/esp_app_format/include/esp_app_desc.h.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

APP_DESC_MAGIC_WORD = 0xABCD5432
APP_DESC_SIZE_BYTES = 256
# Offset of esp_app_desc_t in an app image: 24-byte image header + 8-byte segment header.
APP_DESC_IMAGE_OFFSET = 0x20

# magic, secure_version, reserv1[2], version[32], project_name[32], time[16], date[16],
# idf_ver[32], app_elf_sha256[32], min_efuse_blk_rev_full, max_efuse_blk_rev_full,
# mmu_page_size, spi_flash_mode, reserv3[2], reserv2[18]
APP_DESC_STRUCT = struct.Struct("<II8s32s32s16s16s32s32sHHBB2s72s")
assert APP_DESC_STRUCT.size == APP_DESC_SIZE_BYTES

FIELD_LIMITS_BYTES = {"version": 32, "project_name": 32, "time": 16, "date": 16, "idf_ver": 32}


@dataclass(frozen=True)
class AppDesc:
    version: str
    project_name: str
    secure_version: int = 0
    time: str = "00:00:00"
    date: str = "Jan  1 2026"
    idf_ver: str = "v6.0"
    app_elf_sha256: bytes = b"\x00" * 32
    min_efuse_blk_rev_full: int = 0
    max_efuse_blk_rev_full: int = 199
    mmu_page_size_log2: int = 16
    spi_flash_mode: int = 2


def _c_string(value: str, size: int, field: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) >= size:
        raise ValueError(f"esp_app_desc_t.{field} must be shorter than {size} bytes: {value!r}")
    return raw.ljust(size, b"\x00")


def pack_app_desc(desc: AppDesc) -> bytes:
    """The 256 bytes of esp_app_desc_t for ``desc``."""
    if len(desc.app_elf_sha256) != 32:
        raise ValueError("app_elf_sha256 must be 32 bytes")
    return APP_DESC_STRUCT.pack(
        APP_DESC_MAGIC_WORD,
        desc.secure_version,
        b"\x00" * 8,
        _c_string(desc.version, 32, "version"),
        _c_string(desc.project_name, 32, "project_name"),
        _c_string(desc.time, 16, "time"),
        _c_string(desc.date, 16, "date"),
        _c_string(desc.idf_ver, 32, "idf_ver"),
        desc.app_elf_sha256,
        desc.min_efuse_blk_rev_full,
        desc.max_efuse_blk_rev_full,
        desc.mmu_page_size_log2,
        desc.spi_flash_mode,
        b"\x00" * 2,
        b"\x00" * 72,
    )


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


def unpack_app_desc(raw: bytes) -> AppDesc:
    """Parse esp_app_desc_t; ValueError when the magic word is wrong."""
    if len(raw) < APP_DESC_SIZE_BYTES:
        raise ValueError(f"esp_app_desc_t needs {APP_DESC_SIZE_BYTES} bytes, got {len(raw)}")
    fields = APP_DESC_STRUCT.unpack(raw[:APP_DESC_SIZE_BYTES])
    if fields[0] != APP_DESC_MAGIC_WORD:
        raise ValueError(f"esp_app_desc_t magic is {fields[0]:#010x}, expected {APP_DESC_MAGIC_WORD:#010x}")
    return AppDesc(
        secure_version=fields[1],
        version=_text(fields[3]),
        project_name=_text(fields[4]),
        time=_text(fields[5]),
        date=_text(fields[6]),
        idf_ver=_text(fields[7]),
        app_elf_sha256=fields[8],
        min_efuse_blk_rev_full=fields[9],
        max_efuse_blk_rev_full=fields[10],
        mmu_page_size_log2=fields[11],
        spi_flash_mode=fields[12],
    )
