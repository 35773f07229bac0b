"""Inspect an ESP32-S3 app image with esptool's own image classes.

esptool parses the header, extended header, segments, checksum and appended
SHA-256; csi_ota.app_desc decodes esp_app_desc_t from the first DROM segment
(image offset 0x20). Nothing here re-parses what esptool already parses.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from esptool.bin_image import ESP32S3FirmwareImage
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from csi_ota.app_desc import APP_DESC_IMAGE_OFFSET, APP_DESC_SIZE_BYTES, AppDesc, unpack_app_desc
from csi_ota.errors import CsiOtaError

ESP32S3_CHIP_ID = 9
IMAGE_MAGIC = 0xE9
DIGEST_BYTES = 32
# 8-byte common header, then wp_pin and three SPI drive bytes, then chip_id (u16 LE).
CHIP_ID_OFFSET = 12
FLASH_MODE_NAMES = {0: "QIO", 1: "QOUT", 2: "DIO", 3: "DOUT"}
# Secure Boot v2 signature sector appended by espsecure (signature block magic 0xE7).
SBV2_SECTOR_BYTES = 4096
SBV2_BLOCK_MAGIC = 0xE7
SBV2_BLOCK_VERSIONS = (0x02, 0x03)


@dataclass(frozen=True)
class SegmentInfo:
    index: int
    load_address: int
    length_bytes: int
    file_offset: int
    memory_types: tuple[str, ...]


@dataclass(frozen=True)
class ImageInfo:
    size_bytes: int
    file_sha256: str
    chip_id: int
    chip_name: str
    min_chip_rev_full: int
    max_chip_rev_full: int
    flash_mode: str
    flash_size: str
    flash_freq: str
    entry_point: int
    segments: tuple[SegmentInfo, ...]
    checksum_stored: int
    checksum_calculated: int
    sha256_appended: bool
    sha256_stored: str
    sha256_calculated: str
    image_end_bytes: int  # end of header + segments + checksum + digest
    segments_end_bytes: int  # where the last segment's data ends (Secure Boot v2 padding starts here)
    secure_boot_v2_signed: bool
    app_desc: AppDesc | None

    @property
    def checksum_valid(self) -> bool:
        return self.checksum_stored == self.checksum_calculated

    @property
    def sha256_valid(self) -> bool:
        return self.sha256_appended and self.sha256_stored == self.sha256_calculated

    @property
    def is_esp32s3(self) -> bool:
        return self.chip_id == ESP32S3_CHIP_ID

    @property
    def trailing_bytes(self) -> int:
        return self.size_bytes - self.image_end_bytes

    @property
    def problems(self) -> list[str]:
        """What makes this image unfit to flash to an ESP32-S3 OTA slot (empty when fine)."""
        out = []
        if not self.is_esp32s3:
            out.append(f"chip id {self.chip_id} ({self.chip_name}) is not ESP32-S3 ({ESP32S3_CHIP_ID})")
        if not self.checksum_valid:
            out.append(
                f"checksum {self.checksum_stored:#04x} does not match the segments ({self.checksum_calculated:#04x})"
            )
        if not self.sha256_appended:
            out.append("no SHA-256 appended (the bootloader of an OTA app expects one)")
        elif not self.sha256_valid:
            out.append("appended SHA-256 does not match the image (corrupted or truncated)")
        if self.app_desc is None:
            out.append("no esp_app_desc_t at offset 0x20 (not an ESP-IDF application)")
        return out

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["checksum_valid"] = self.checksum_valid
        data["sha256_valid"] = self.sha256_valid
        data["trailing_bytes"] = self.trailing_bytes
        data["problems"] = self.problems
        if self.app_desc is not None:
            desc = asdict(self.app_desc)
            desc["app_elf_sha256"] = self.app_desc.app_elf_sha256.hex()
            data["app_desc"] = desc
        return data


def _chip_name(chip_id: int) -> str:
    for chip in CHIP_DEFS.values():
        if getattr(chip, "IMAGE_CHIP_ID", None) == chip_id:
            return str(chip.CHIP_NAME)
    return "unknown"


def _lookup(table: dict[str, int], value: int, default: str) -> str:
    for name, code in table.items():
        if code == value:
            return name
    return default


def _sbv2_signed(data: bytes, image_end: int) -> bool:
    """A Secure Boot v2 signature sector follows the 64 KB-aligned image."""
    if image_end % 0x10000 or len(data) < image_end + SBV2_SECTOR_BYTES:
        return False
    return data[image_end] == SBV2_BLOCK_MAGIC and data[image_end + 1] in SBV2_BLOCK_VERSIONS


def inspect_image(data: bytes, *, source: str = "image") -> ImageInfo:
    """Parse ``data`` as an ESP32-S3 app image; CsiOtaError (exit 2) with esptool's reason when it is not one."""
    if not data:
        raise CsiOtaError(f"{source} is empty, not an app image")
    if data[0] != IMAGE_MAGIC:
        raise CsiOtaError(
            f"{source} is not an ESP app image: first byte is {data[0]:#04x}, an image starts with {IMAGE_MAGIC:#04x}"
        )
    stream = io.BytesIO(data)
    try:
        image = ESP32S3FirmwareImage(stream)
        image_end = stream.tell()
    except (FatalError, RuntimeError, struct.error, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, (struct.error, TypeError)):
            reason = f"the file ends early ({len(data)} bytes): truncated image ({exc})"
        elif len(exc.args) > 1 and isinstance(exc.args[0], str):
            reason = exc.args[0] % exc.args[1:]  # esptool's RuntimeError carries printf-style args
        else:
            reason = str(exc)
        raise CsiOtaError(f"{source} is not a valid ESP32-S3 app image: esptool says: {reason}") from exc

    sha_stored = getattr(image, "stored_digest", b"") or b""
    sha_calc = getattr(image, "calc_digest", b"") or b""
    if image.append_digest:
        image_end = (image.data_length or 0) + len(sha_stored)
    segments = tuple(
        SegmentInfo(
            index=i,
            load_address=seg.addr,
            length_bytes=len(seg.data),
            file_offset=seg.file_offs,
            memory_types=tuple(seg.get_memory_type(image)),
        )
        for i, seg in enumerate(image.segments)
    )
    segments_end = max((s.file_offset + 8 + s.length_bytes for s in segments), default=24)

    app_desc = None
    if data[APP_DESC_IMAGE_OFFSET : APP_DESC_IMAGE_OFFSET + 4] and segments:
        try:
            app_desc = unpack_app_desc(
                data[APP_DESC_IMAGE_OFFSET : APP_DESC_IMAGE_OFFSET + APP_DESC_SIZE_BYTES]
            )
        except ValueError:
            app_desc = None

    loader = image.ROM_LOADER
    return ImageInfo(
        size_bytes=len(data),
        file_sha256=hashlib.sha256(data).hexdigest(),
        chip_id=image.chip_id,
        chip_name=_chip_name(image.chip_id),
        min_chip_rev_full=image.min_rev_full,
        max_chip_rev_full=image.max_rev_full,
        flash_mode=FLASH_MODE_NAMES.get(image.flash_mode, f"unknown ({image.flash_mode})"),
        flash_size=_lookup(loader.FLASH_SIZES, image.flash_size_freq & 0xF0, "unknown"),
        flash_freq=_lookup(loader.FLASH_FREQUENCY, image.flash_size_freq & 0x0F, "unknown"),
        entry_point=image.entrypoint,
        segments=segments,
        checksum_stored=image.checksum,
        checksum_calculated=image.calculate_checksum(),
        sha256_appended=bool(image.append_digest),
        sha256_stored=sha_stored.hex(),
        sha256_calculated=sha_calc.hex(),
        image_end_bytes=image_end,
        segments_end_bytes=segments_end,
        secure_boot_v2_signed=_sbv2_signed(data, image_end),
        app_desc=app_desc,
    )


def with_chip_id(data: bytes, chip_id: int) -> bytes:
    """``data`` with the extended header's chip id set and the appended SHA-256 recomputed.

    esptool's save() always writes its own chip's id, so images for another chip (QA's wrong-chip
    cases) are made by patching the header; the checksum covers segments only and stays valid.
    """
    if data[CHIP_ID_OFFSET : CHIP_ID_OFFSET + 2] == struct.pack("<H", chip_id):
        return data
    info = inspect_image(data)
    patched = bytearray(data)
    patched[CHIP_ID_OFFSET : CHIP_ID_OFFSET + 2] = struct.pack("<H", chip_id)
    if info.sha256_appended:
        body_end = info.image_end_bytes - DIGEST_BYTES
        patched[body_end : info.image_end_bytes] = hashlib.sha256(patched[:body_end]).digest()
    return bytes(patched)


def read_image(path: str | Path) -> tuple[bytes, ImageInfo]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsiOtaError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    return data, inspect_image(data, source=str(path))
