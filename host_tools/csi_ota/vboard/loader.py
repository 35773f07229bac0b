"""The ESP32-S3 ROM serial loader and esptool's flasher stub, as esptool talks to them.

One :class:`Loader` per download-mode boot. It starts as the ROM loader; after MEM_END with
an entry point (esptool uploading its stub) it answers ``OHAI`` and from then on behaves as
the stub (two status bytes, stub-only commands, stub error codes). Packets and status bytes
follow esptool's docs/en/advanced-topics/serial-protocol.rst; the checksum of every *_DATA
packet is verified, and a wrong or unknown command gets the loader's error bytes — never
silence.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from csi_ota.vboard import slip
from csi_ota.vboard.flashchip import SECTOR_BYTES, FlashChip, FlashRangeError

log = logging.getLogger(__name__)

# Command opcodes (esptool's ESPLoader.ESP_CMDS).
FLASH_BEGIN = 0x02
FLASH_DATA = 0x03
FLASH_END = 0x04
MEM_BEGIN = 0x05
MEM_END = 0x06
MEM_DATA = 0x07
SYNC = 0x08
WRITE_REG = 0x09
READ_REG = 0x0A
SPI_SET_PARAMS = 0x0B
SPI_ATTACH = 0x0D
CHANGE_BAUDRATE = 0x0F
FLASH_DEFL_BEGIN = 0x10
FLASH_DEFL_DATA = 0x11
FLASH_DEFL_END = 0x12
SPI_FLASH_MD5 = 0x13
GET_SECURITY_INFO = 0x14
ERASE_FLASH = 0xD0
ERASE_REGION = 0xD1
READ_FLASH = 0xD2
RUN_USER_CODE = 0xD3
STUB_ONLY = frozenset({ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE})

REBOOT_TO_LOADER = "loader"
REBOOT_TO_APP = "app"
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
SYNC_RESPONSES = 8  # the ROM answers a SYNC eight times; esptool reads them all
ROM_SYNC_VALUE = 0x20120707  # any non-zero value: esptool takes 0 for "the stub answered"
CHECKSUM_SEED = 0xEF
OHAI = b"OHAI"

# ROM loader error codes (serial-protocol.rst, "ROM Loader Errors").
ROM_ERR_INVALID_MESSAGE = 0x05  # also every unknown command
ROM_ERR_FAILED = 0x06
ROM_ERR_CHECKSUM = 0x07
ROM_ERR_FLASH_WRITE = 0x08
ROM_ERR_FLASH_READ = 0x09
ROM_ERR_DEFLATE = 0x0B
# Flasher stub error codes (esp-flasher-stub / stub_flasher.h).
STUB_ERR_BAD_DATA_LEN = 0xC0
STUB_ERR_BAD_DATA_CHECKSUM = 0xC1
STUB_ERR_FAILED_SPI_OP = 0xC4
STUB_ERR_NOT_IN_FLASH_MODE = 0xC6
STUB_ERR_INFLATE = 0xC7
STUB_ERR_CMD_NOT_IMPLEMENTED = 0xFF

# ESP32-S3 registers esptool reads or drives (esptool.targets.esp32s3.ESP32S3ROM).
ESP32S3_CHIP_ID = 9
EFUSE_BASE = 0x60007000
EFUSE_MAC0 = EFUSE_BASE + 0x044
EFUSE_MAC1 = EFUSE_BASE + 0x048
SPI_REG_BASE = 0x60002000
SPI_CMD_REG = SPI_REG_BASE + 0x00
SPI_USR2_REG = SPI_REG_BASE + 0x20
SPI_W0_REG = SPI_REG_BASE + 0x58
SPI_CMD_USR = 1 << 18
SPIFLASH_RDID = 0x9F


def checksum(data: bytes) -> int:
    value = CHECKSUM_SEED
    for byte in data:
        value ^= byte
    return value


class LoaderError(Exception):
    """A command refused: (rom error code, stub error code)."""

    def __init__(self, rom_code: int, stub_code: int, why: str) -> None:
        super().__init__(why)
        self.rom_code = rom_code
        self.stub_code = stub_code


@dataclass
class _Download:
    """A FLASH_BEGIN / FLASH_DEFL_BEGIN / MEM_BEGIN in progress."""

    kind: str  # "flash", "deflate" or "mem"
    offset: int
    block_bytes: int
    blocks: int
    cursor: int = 0
    inflater: object | None = None
    received: int = 0


@dataclass
class Loader:
    """Answers esptool's packets on ``flash``. ``send`` writes raw bytes to the serial port,
    ``receive_frame(timeout_s)`` returns the next SLIP frame (or None), ``reboot()`` leaves
    download mode and boots the app."""

    flash: FlashChip
    send: Callable[[bytes], None]
    receive_frame: Callable[[float], bytes | None]
    reboot: Callable[[], None]
    mac: bytes = b"\x7c\xdf\xa1\x00\x00\x01"
    stub: bool = False
    registers: dict[int, int] = field(default_factory=dict)
    _download: _Download | None = field(default=None, init=False)
    reboot_requested: str = field(default="", init=False)  # REBOOT_TO_LOADER / REBOOT_TO_APP

    def __post_init__(self) -> None:
        # MAC as esptool's read_mac() takes it apart: mac1's low 16 bits, then mac0.
        self.registers[EFUSE_MAC0] = int.from_bytes(self.mac[2:6], "big")
        self.registers[EFUSE_MAC1] = int.from_bytes(self.mac[0:2], "big")

    # -- framing --------------------------------------------------------------------------------
    def respond(self, op: int, *, value: int = 0, data: bytes = b"", error: int | None = None) -> None:
        status = bytes([0 if error is None else 1, error or 0])
        if not self.stub:
            status += b"\x00\x00"  # the ROM's two reserved status bytes
        body = data + status
        self.send(slip.encode(struct.pack("<BBHI", 1, op, len(body), value) + body))

    def handle(self, frame: bytes) -> None:
        """One request frame."""
        if len(frame) < 8 or frame[0] != 0x00:
            return  # not a request: the ROM ignores it
        _direction, op, size, chk = struct.unpack_from("<BBHI", frame)
        payload = frame[8:]
        try:
            if size != len(payload):
                raise LoaderError(ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "size field mismatch")
            self._dispatch(op, payload, chk)
        except LoaderError as exc:
            log.info("loader: command %#04x refused: %s", op, exc)
            self.respond(op, error=exc.stub_code if self.stub else exc.rom_code)
        except FlashRangeError as exc:
            log.info("loader: command %#04x refused: %s", op, exc)
            self.respond(op, error=STUB_ERR_FAILED_SPI_OP if self.stub else ROM_ERR_FAILED)

    # -- commands -------------------------------------------------------------------------------
    def _dispatch(self, op: int, payload: bytes, chk: int) -> None:
        handler = self._HANDLERS.get(op)
        if handler is None or (op in STUB_ONLY and not self.stub):
            raise LoaderError(ROM_ERR_INVALID_MESSAGE, STUB_ERR_CMD_NOT_IMPLEMENTED, "unknown command")
        handler(self, op, payload, chk)

    @staticmethod
    def _words(payload: bytes, count: int, *, at_least: bool = False) -> tuple[int, ...]:
        need = 4 * count
        if len(payload) < need or (not at_least and len(payload) != need):
            raise LoaderError(ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, f"expected {need} bytes")
        return struct.unpack_from(f"<{count}I", payload)

    def _sync(self, op: int, payload: bytes, chk: int) -> None:
        if payload != SYNC_PAYLOAD:
            raise LoaderError(ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "bad SYNC frame")
        for _ in range(SYNC_RESPONSES):
            self.respond(op, value=0 if self.stub else ROM_SYNC_VALUE)

    def _read_reg(self, op: int, payload: bytes, chk: int) -> None:
        (address,) = self._words(payload, 1)
        self.respond(op, value=self.registers.get(address, 0))

    def _write_reg(self, op: int, payload: bytes, chk: int) -> None:
        if not payload or len(payload) % 16:
            raise LoaderError(
                ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "WRITE_REG takes 16-byte entries"
            )
        for i in range(0, len(payload), 16):
            address, value, mask, _delay_us = struct.unpack_from("<4I", payload, i)
            old = self.registers.get(address, 0)
            self.registers[address] = (old & ~mask) | (value & mask)
            if address == SPI_CMD_REG and self.registers[address] & SPI_CMD_USR:
                self._run_spi_user_command()
        self.respond(op)

    def _run_spi_user_command(self) -> None:
        """esptool's run_spiflash_command: the command byte in SPI_USR2, the answer in SPI_W0."""
        command = self.registers.get(SPI_USR2_REG, 0) & 0xFF
        self.registers[SPI_W0_REG] = self.flash.jedec_id if command == SPIFLASH_RDID else 0
        self.registers[SPI_CMD_REG] &= ~SPI_CMD_USR  # done at once

    def _ok(self, op: int, payload: bytes, chk: int) -> None:
        self.respond(op)  # SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE: nothing to configure

    def _security_info(self, op: int, payload: bytes, chk: int) -> None:
        # flags, flash_crypt_cnt, 7 key purposes, chip id, API (eco) version: no security on.
        self.respond(op, data=struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, ESP32S3_CHIP_ID, 0))

    def _flash_begin(self, op: int, payload: bytes, chk: int) -> None:
        words = self._words(payload, 4, at_least=True)
        erase_bytes, blocks, block_bytes, offset = words
        if len(payload) not in (16, 20):
            raise LoaderError(
                ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "FLASH_BEGIN takes 4 or 5 words"
            )
        if len(payload) == 20 and struct.unpack_from("<I", payload, 16)[0]:
            raise LoaderError(
                ROM_ERR_FAILED, STUB_ERR_FAILED_SPI_OP, "encrypted writes: no flash encryption here"
            )
        # Both loaders erase exactly the sectors erase_bytes covers (the stub just in time);
        # a padded last block past them writes 0xFF, which changes nothing on NOR flash.
        self.flash.erase_covering(offset, erase_bytes)
        kind = "deflate" if op == FLASH_DEFL_BEGIN else "flash"
        inflater = zlib.decompressobj() if kind == "deflate" else None
        self._download = _Download(kind, offset, block_bytes, blocks, inflater=inflater)
        self.respond(op)

    def _data_block(self, payload: bytes, chk: int) -> tuple[int, bytes]:
        length, seq, _zero1, _zero2 = self._words(payload[:16], 4)
        data = payload[16:]
        if length != len(data):
            raise LoaderError(ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "data length mismatch")
        if checksum(data) != chk:
            raise LoaderError(ROM_ERR_CHECKSUM, STUB_ERR_BAD_DATA_CHECKSUM, f"checksum of block {seq} wrong")
        return seq, data

    def _flash_data(self, op: int, payload: bytes, chk: int) -> None:
        seq, data = self._data_block(payload, chk)
        want = "deflate" if op == FLASH_DEFL_DATA else "flash"
        download = self._download
        if download is None or download.kind != want:
            raise LoaderError(ROM_ERR_FAILED, STUB_ERR_NOT_IN_FLASH_MODE, "no FLASH_BEGIN before data")
        if want == "flash":
            self.flash.write(download.offset + seq * download.block_bytes, data)
        else:
            try:
                plain = download.inflater.decompress(data)  # type: ignore[union-attr]
            except zlib.error as exc:
                raise LoaderError(ROM_ERR_DEFLATE, STUB_ERR_INFLATE, f"inflate: {exc}") from None
            self.flash.write(download.offset + download.cursor, plain)
            download.cursor += len(plain)
        download.received += 1
        self.respond(op)

    def _flash_end(self, op: int, payload: bytes, chk: int) -> None:
        """0: reboot — a software reset, and the latched GPIO0 strap brings the ROM loader back
        (esptool's soft_reset(stay_in_bootloader=True) from the stub relies on it). 1: the
        ROM runs the user code (esptool --no-stub ... run / --after soft-reset); the stub
        just stays."""
        (run_user_code,) = self._words(payload, 1)
        self._download = None
        self.respond(op)
        if run_user_code == 0:
            self.reboot_requested = REBOOT_TO_LOADER
        elif not self.stub:
            self.reboot_requested = REBOOT_TO_APP

    def _mem_begin(self, op: int, payload: bytes, chk: int) -> None:
        _size, blocks, block_bytes, offset = self._words(payload, 4)
        self._download = _Download("mem", offset, block_bytes, blocks)
        self.respond(op)

    def _mem_data(self, op: int, payload: bytes, chk: int) -> None:
        self._data_block(payload, chk)
        if self._download is None or self._download.kind != "mem":
            raise LoaderError(ROM_ERR_FAILED, STUB_ERR_NOT_IN_FLASH_MODE, "no MEM_BEGIN before data")
        self._download.received += 1
        self.respond(op)  # RAM is not modelled: the uploaded code is the stub, behaved below

    def _mem_end(self, op: int, payload: bytes, chk: int) -> None:
        no_entry, entry = self._words(payload, 2)
        self._download = None
        self.respond(op)
        if not no_entry and entry:
            self.stub = True  # esptool's flasher stub "runs": it says hello first
            self.send(slip.encode(OHAI))

    def _md5(self, op: int, payload: bytes, chk: int) -> None:
        address, size, _zero1, _zero2 = self._words(payload, 4)
        digest = self.flash.md5(address, size)
        self.respond(op, data=digest if self.stub else digest.hex().encode())

    def _erase_flash(self, op: int, payload: bytes, chk: int) -> None:
        self.flash.erase(0, self.flash.size_bytes)
        self.respond(op)

    def _erase_region(self, op: int, payload: bytes, chk: int) -> None:
        offset, size = self._words(payload, 2)
        if offset % SECTOR_BYTES or size % SECTOR_BYTES:
            raise LoaderError(
                ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "erase region not 4 KiB-aligned"
            )
        self.flash.erase(offset, size)
        self.respond(op)

    def _read_flash(self, op: int, payload: bytes, chk: int) -> None:
        """The stub's READ_FLASH: data frames of packet_bytes, each acknowledged, then the MD5."""
        offset, length, packet_bytes, max_unacked = self._words(payload, 4)
        if not packet_bytes or not max_unacked:
            raise LoaderError(ROM_ERR_INVALID_MESSAGE, STUB_ERR_BAD_DATA_LEN, "packet size 0")
        data = self.flash.read(offset, length)
        self.respond(op)
        sent = acked = 0
        while acked < length:
            while sent < length and (sent - acked) < packet_bytes * max_unacked:
                self.send(slip.encode(data[sent : sent + packet_bytes]))
                sent = min(length, sent + packet_bytes)
            ack = self.receive_frame(5.0)
            if ack is None or len(ack) != 4:
                log.info("loader: READ_FLASH aborted (no acknowledgement)")
                return
            acked = struct.unpack("<I", ack)[0]
        self.send(slip.encode(self.flash.md5(offset, length)))

    def _run_user_code(self, op: int, payload: bytes, chk: int) -> None:
        self.reboot_requested = REBOOT_TO_APP  # the stub jumps to the app without answering

    _HANDLERS: ClassVar[dict[int, Callable[[Loader, int, bytes, int], None]]] = {
        SYNC: _sync,
        READ_REG: _read_reg,
        WRITE_REG: _write_reg,
        SPI_ATTACH: _ok,
        SPI_SET_PARAMS: _ok,
        CHANGE_BAUDRATE: _ok,
        GET_SECURITY_INFO: _security_info,
        FLASH_BEGIN: _flash_begin,
        FLASH_DATA: _flash_data,
        FLASH_END: _flash_end,
        FLASH_DEFL_BEGIN: _flash_begin,
        FLASH_DEFL_DATA: _flash_data,
        FLASH_DEFL_END: _flash_end,
        MEM_BEGIN: _mem_begin,
        MEM_DATA: _mem_data,
        MEM_END: _mem_end,
        SPI_FLASH_MD5: _md5,
        ERASE_FLASH: _erase_flash,
        ERASE_REGION: _erase_region,
        READ_FLASH: _read_flash,
        RUN_USER_CODE: _run_user_code,
    }
