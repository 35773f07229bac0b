"""The board's SPI NOR flash: the flash file csi-ota-sim boots from, edited in place.

Writes only clear bits (NOR), erases set whole 4 KiB sectors to 0xFF — the same rules as the
simulator's flash model (docs/sim.md), so what esptool writes is what the chip would hold.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from csi_ota.errors import CsiOtaError

SECTOR_BYTES = 4096
FLASH_SIZES_BYTES = (4 * 1024 * 1024, 8 * 1024 * 1024, 16 * 1024 * 1024)
# JEDEC id esptool reads with RDID (0x9F) and prints as "Manufacturer: 20, Device: 40xx":
# an XMC part (ESP32-S3-WROOM modules) whose capacity byte is log2(size).
JEDEC_MANUFACTURER = 0x20
JEDEC_MEMORY_TYPE = 0x40


class FlashRangeError(Exception):
    """An operation outside the chip or not sector-aligned (the loader answers with an error)."""


class FlashChip:
    """A flash file opened for the loader; ``on_change(start, end)`` hears of every change."""

    def __init__(
        self, path: str | os.PathLike[str], on_change: Callable[[int, int], None] | None = None
    ) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        if size not in FLASH_SIZES_BYTES:
            raise CsiOtaError(f"{self.path}: {size} bytes is not a 4, 8 or 16 MiB flash image")
        self.size_bytes = size
        self.on_change = on_change

    @classmethod
    def create_blank(cls, path: str | os.PathLike[str], size_bytes: int = FLASH_SIZES_BYTES[0]) -> Path:
        """An erased chip (a new board): every byte 0xFF."""
        if size_bytes not in FLASH_SIZES_BYTES:
            raise CsiOtaError(f"flash size {size_bytes} is not 4, 8 or 16 MiB")
        out = Path(path)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as f:
            chunk = b"\xff" * (1024 * 1024)
            for _ in range(size_bytes // len(chunk)):
                f.write(chunk)
        os.replace(tmp, out)
        return out

    @property
    def jedec_id(self) -> int:
        """RDID's 24 bits as esptool reads them from SPI_W0 (manufacturer in the low byte)."""
        capacity = self.size_bytes.bit_length() - 1
        return JEDEC_MANUFACTURER | (JEDEC_MEMORY_TYPE << 8) | (capacity << 16)

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size_bytes:
            raise FlashRangeError(f"{offset:#x}+{length:#x} is outside the {self.size_bytes:#x}-byte flash")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def erase(self, offset: int, length: int) -> None:
        """Erase whole sectors; offset and length must be sector-aligned."""
        if offset % SECTOR_BYTES or length % SECTOR_BYTES:
            raise FlashRangeError(f"erase {offset:#x}+{length:#x} is not 4 KiB-aligned")
        self._check(offset, length)
        if not length:
            return
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(b"\xff" * length)
        self._changed(offset, offset + length)

    def erase_covering(self, offset: int, length: int) -> None:
        """Erase every sector touched by [offset, offset + length) — what FLASH_BEGIN does."""
        start = offset - offset % SECTOR_BYTES
        end = offset + length
        end += (-end) % SECTOR_BYTES
        self.erase(start, end - start)

    def write(self, offset: int, data: bytes) -> None:
        """Program bytes: each bit can only go from 1 to 0 (NOR)."""
        self._check(offset, len(data))
        if not data:
            return
        with open(self.path, "r+b") as f:
            f.seek(offset)
            old = f.read(len(data))
            merged = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(
                len(data), "little"
            )
            f.seek(offset)
            f.write(merged)
        self._changed(offset, offset + len(data))

    def md5(self, offset: int, length: int) -> bytes:
        return hashlib.md5(self.read(offset, length)).digest()

    def _changed(self, start: int, end: int) -> None:
        if self.on_change is not None:
            self.on_change(start, end)
