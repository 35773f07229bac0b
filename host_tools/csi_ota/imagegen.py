"""Builds real ESP32-S3 app images with esptool's own image classes.

Used by the tests, the demo, the fleet simulator and the virtual ESP32-S3:
every image is a genuine ESP app image (header, segments, checksum, appended
SHA-256) with esp_app_desc_t at offset 0x20, accepted by `esptool image-info`.

A *behaviour marker* — ``CSI_SIM_BEHAVIOUR:<name>`` NUL-terminated inside the
DROM segment — tells the virtual ESP32-S3 how the app behaves after boot
(docs/sim-markers.md): ``crash_at_boot`` or ``fail_selftest``. Real firmware
built with the test sdkconfig variants has the same behaviours compiled in.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field

from esptool.bin_image import ELFSection, ESP32S3FirmwareImage

from csi_ota.app_desc import AppDesc, pack_app_desc
from csi_ota.fileio import write_atomic

ESP32S3_CHIP_ID = 9
SIM_BEHAVIOUR_PREFIX = b"CSI_SIM_BEHAVIOUR:"
SIM_BEHAVIOURS = ("normal", "crash_at_boot", "fail_selftest")

# Load addresses of an ESP32-S3 app (flash-mapped DROM/IROM, internal DRAM/IRAM).
DROM_ADDR = 0x3C000020  # esp_app_desc_t lands at image offset 0x20
IROM_ADDR = 0x42010020
DRAM_ADDR = 0x3FC88000
IRAM_ADDR = 0x40374000


@dataclass(frozen=True)
class ImageSpec:
    """What to put into a sample app image."""

    version: str
    project_name: str = "csi_sensor"
    secure_version: int = 0
    behaviour: str = "normal"
    # Approximate total image size; the IROM segment is sized to reach it.
    target_size_bytes: int = 200_000
    chip_id: int = ESP32S3_CHIP_ID
    min_rev_full: int = 0
    max_rev_full: int = 99
    # Deterministic filler: same spec, same bytes.
    seed: bytes = field(default=b"csi-ota")


def _filler(length: int, seed: bytes) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:length])


def build_app_image(spec: ImageSpec) -> bytes:
    """A complete ESP32-S3 app image for ``spec`` (bytes, ready to flash at an OTA slot)."""
    if spec.behaviour not in SIM_BEHAVIOURS:
        raise ValueError(f"unknown behaviour {spec.behaviour!r}; choose one of {', '.join(SIM_BEHAVIOURS)}")
    desc = AppDesc(
        version=spec.version,
        project_name=spec.project_name,
        secure_version=spec.secure_version,
        app_elf_sha256=hashlib.sha256(f"{spec.project_name}/{spec.version}".encode()).digest(),
    )
    rodata = pack_app_desc(desc)
    if spec.behaviour != "normal":
        rodata += SIM_BEHAVIOUR_PREFIX + spec.behaviour.encode() + b"\x00"
    rodata += _filler(4096, spec.seed + b"rodata" + spec.version.encode())

    image = ESP32S3FirmwareImage()
    image.min_rev_full = spec.min_rev_full
    image.min_rev = spec.min_rev_full // 100
    image.max_rev_full = spec.max_rev_full
    image.flash_mode = 2  # DIO
    image.flash_size_freq = 0x20  # 4 MB, 80 MHz
    image.entrypoint = IRAM_ADDR + 0x100
    iram = _filler(2048, spec.seed + b"iram" + spec.version.encode())
    dram = _filler(1024, spec.seed + b"dram" + spec.version.encode())
    irom_len = max(4096, spec.target_size_bytes - 0x10000)
    data = b""
    for _ in range(3):  # padding depends on segment sizes: converge on the target size
        irom_len -= irom_len % 4
        irom = _filler(irom_len, spec.seed + b"irom" + spec.version.encode())
        image.segments = [
            ELFSection(b".flash.appdesc", DROM_ADDR, rodata, flags=0),
            ELFSection(b".dram0.data", DRAM_ADDR, dram, flags=0),
            ELFSection(b".iram0.text", IRAM_ADDR, iram, flags=0),
            ELFSection(b".flash.text", IROM_ADDR, irom, flags=0),
        ]
        saved = image.save(None)
        assert saved is not None
        data = saved
        shortfall = spec.target_size_bytes - len(data)
        if abs(shortfall) < 16 or irom_len + shortfall < 4096:
            break
        irom_len += shortfall
    if spec.chip_id != ESP32S3_CHIP_ID:
        # esptool's save() always writes its own chip's id: patch it (SHA-256 recomputed).
        from csi_ota.image_info import with_chip_id

        data = with_chip_id(data, spec.chip_id)
    return data


def write_app_image(spec: ImageSpec, path: str | os.PathLike[str]) -> bytes:
    """Build the image and write it atomically to ``path``; returns the bytes."""
    data = build_app_image(spec)
    write_atomic(path, data)
    return data


def load_image(data: bytes) -> ESP32S3FirmwareImage:
    """Parse ``data`` with esptool's ESP32-S3 image class (raises esptool's FatalError)."""
    return ESP32S3FirmwareImage(io.BytesIO(data))
