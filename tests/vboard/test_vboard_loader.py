"""The ROM loader and flasher stub of the virtual board, packet by packet (no network)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from csi_ota.vboard import loader as rom
from csi_ota.vboard import slip
from csi_ota.vboard.flashchip import FlashChip


class Wire:
    """The host side of the UART: frames the loader sent, and frames to hand it."""

    def __init__(self) -> None:
        self.decoder = slip.Decoder()
        self.sent: list[bytes] = []
        self.to_loader: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent += self.decoder.feed(data)

    def receive(self, timeout_s: float) -> bytes | None:
        return self.to_loader.pop(0) if self.to_loader else None

    def responses(self) -> list[tuple[int, int, bytes]]:
        """(op, value, body) of every response frame, consumed."""
        out = []
        for frame in self.sent:
            direction, op, size, value = struct.unpack_from("<BBHI", frame)
            assert direction == 1 and size == len(frame) - 8
            out.append((op, value, frame[8:]))
        self.sent = []
        return out


def request(op: int, data: bytes = b"", chk: int = 0) -> bytes:
    return struct.pack("<BBHI", 0, op, len(data), chk) + data


def data_block(data: bytes, seq: int) -> bytes:
    return struct.pack("<IIII", len(data), seq, 0, 0) + data


@pytest.fixture
def chip(tmp_path: Path) -> FlashChip:
    return FlashChip(FlashChip.create_blank(tmp_path / "flash.bin"))


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def loader(chip: FlashChip, wire: Wire) -> rom.Loader:
    return rom.Loader(flash=chip, send=wire.send, receive_frame=wire.receive, reboot=lambda: None)


def test_sync_is_answered_eight_times_by_the_rom(loader: rom.Loader, wire: Wire) -> None:
    loader.handle(request(rom.SYNC, rom.SYNC_PAYLOAD))
    answers = wire.responses()
    assert len(answers) == rom.SYNC_RESPONSES
    assert all(op == rom.SYNC and value != 0 and body == b"\0\0\0\0" for op, value, body in answers)
    loader.handle(request(rom.SYNC, b"\x07\x07"))  # a bad sync frame is refused, not ignored
    assert wire.responses() == [(rom.SYNC, 0, bytes([1, rom.ROM_ERR_INVALID_MESSAGE, 0, 0]))]


def test_flash_data_with_a_wrong_checksum_is_refused_and_writes_nothing(
    loader: rom.Loader, wire: Wire, chip: FlashChip
) -> None:
    block = bytes(range(256)) * 4
    loader.handle(request(rom.FLASH_BEGIN, struct.pack("<IIIII", len(block), 1, len(block), 0x10000, 0)))
    assert wire.responses() == [(rom.FLASH_BEGIN, 0, b"\0\0\0\0")]
    loader.handle(request(rom.FLASH_DATA, data_block(block, 0), chk=rom.checksum(block) ^ 0x01))
    assert wire.responses() == [(rom.FLASH_DATA, 0, bytes([1, rom.ROM_ERR_CHECKSUM, 0, 0]))]
    assert chip.read(0x10000, len(block)) == b"\xff" * len(block)
    # the same block with its checksum: written (esptool retries a refused block like this)
    loader.handle(request(rom.FLASH_DATA, data_block(block, 0), chk=rom.checksum(block)))
    assert wire.responses() == [(rom.FLASH_DATA, 0, b"\0\0\0\0")]
    assert chip.read(0x10000, len(block)) == block
    # a length field that disagrees with the data is a malformed message
    loader.handle(request(rom.FLASH_DATA, struct.pack("<IIII", 99, 1, 0, 0) + block, chk=rom.checksum(block)))
    assert wire.responses()[0][2][:2] == bytes([1, rom.ROM_ERR_INVALID_MESSAGE])


def test_unknown_and_stub_only_commands_get_the_rom_error_bytes(loader: rom.Loader, wire: Wire) -> None:
    loader.handle(request(0x55, b"\x01\x02"))
    loader.handle(request(rom.ERASE_REGION, struct.pack("<II", 0, 0x1000)))  # the ROM has no ERASE_REGION
    loader.handle(request(rom.READ_REG, b"\x00"))  # short argument
    assert [(op, body) for op, _, body in wire.responses()] == [
        (0x55, bytes([1, rom.ROM_ERR_INVALID_MESSAGE, 0, 0])),
        (rom.ERASE_REGION, bytes([1, rom.ROM_ERR_INVALID_MESSAGE, 0, 0])),
        (rom.READ_REG, bytes([1, rom.ROM_ERR_INVALID_MESSAGE, 0, 0])),
    ]
    loader.handle(b"\x01\x02\x03")  # not a request at all: ignored, as the ROM does
    assert wire.responses() == []


def test_stub_after_mem_end_says_ohai_and_uses_stub_status_and_codes(
    loader: rom.Loader, wire: Wire, chip: FlashChip
) -> None:
    stub_text = b"\x00" * 64
    loader.handle(request(rom.MEM_BEGIN, struct.pack("<IIII", len(stub_text), 1, 0x1800, 0x40380000)))
    loader.handle(request(rom.MEM_DATA, data_block(stub_text, 0), chk=rom.checksum(stub_text) ^ 0xFF))
    loader.handle(request(rom.MEM_DATA, data_block(stub_text, 0), chk=rom.checksum(stub_text)))
    loader.handle(request(rom.MEM_END, struct.pack("<II", 0, 0x40380400)))
    frames = list(wire.sent)
    assert frames[-1] == b"OHAI"
    wire.sent = frames[:-1]
    assert [body for _, _, body in wire.responses()] == [
        b"\0\0\0\0",
        bytes([1, rom.ROM_ERR_CHECKSUM, 0, 0]),
        b"\0\0\0\0",
        b"\0\0\0\0",
    ]
    assert loader.stub
    loader.handle(request(0x55))
    loader.handle(request(rom.ERASE_REGION, struct.pack("<II", 0x1000, 0x1000)))
    loader.handle(request(rom.ERASE_REGION, struct.pack("<II", 0x1001, 0x1000)))
    block = b"\x00" * 16
    loader.handle(request(rom.FLASH_DEFL_DATA, data_block(block, 0), chk=rom.checksum(block)))
    assert [body for _, _, body in wire.responses()] == [
        bytes([1, rom.STUB_ERR_CMD_NOT_IMPLEMENTED]),
        b"\0\0",
        bytes([1, rom.STUB_ERR_BAD_DATA_LEN]),
        bytes([1, rom.STUB_ERR_NOT_IN_FLASH_MODE]),
    ]


def test_stub_read_flash_streams_acknowledged_packets_then_the_md5(
    loader: rom.Loader, wire: Wire, chip: FlashChip
) -> None:
    loader.stub = True
    payload = bytes(range(256)) * 40  # 10240 bytes: 3 packets of 4096
    chip.write(0x3000, payload)
    wire.to_loader = [struct.pack("<I", n) for n in (4096, 8192, 10240)]
    loader.handle(request(rom.READ_FLASH, struct.pack("<IIII", 0x3000, len(payload), 4096, 1)))
    first, *packets, digest = wire.sent
    assert first[8:] == b"\0\0"
    assert [len(p) for p in packets] == [4096, 4096, 2048]
    assert b"".join(packets) == payload
    assert digest == hashlib.md5(payload).digest()


def test_md5_is_hex_from_the_rom_and_raw_from_the_stub(
    loader: rom.Loader, wire: Wire, chip: FlashChip
) -> None:
    expected = hashlib.md5(chip.read(0, 0x1000)).digest()
    loader.handle(request(rom.SPI_FLASH_MD5, struct.pack("<IIII", 0, 0x1000, 0, 0)))
    loader.stub = True
    loader.handle(request(rom.SPI_FLASH_MD5, struct.pack("<IIII", 0, 0x1000, 0, 0)))
    rom_answer, stub_answer = (body for _, _, body in wire.responses())
    assert rom_answer == expected.hex().encode() + b"\0\0\0\0"
    assert stub_answer == expected + b"\0\0"


def test_flash_writes_only_clear_bits_and_erases_whole_sectors(chip: FlashChip) -> None:
    chip.write(0x2000, b"\x0f\xf0")
    chip.write(0x2000, b"\xf0\xff")  # NOR: 1 -> 0 only
    assert chip.read(0x2000, 2) == b"\x00\xf0"
    chip.erase_covering(0x2001, 1)
    assert chip.read(0x2000, 0x1000) == b"\xff" * 0x1000
    with pytest.raises(Exception, match="outside"):
        chip.read(chip.size_bytes - 1, 2)


def test_flash_end_reboots_into_the_loader_or_runs_the_app_as_esptool_expects(
    loader: rom.Loader, wire: Wire
) -> None:
    loader.handle(request(rom.FLASH_END, struct.pack("<I", 1)))  # ROM: run user code
    assert loader.reboot_requested == rom.REBOOT_TO_APP
    loader.reboot_requested = ""
    loader.stub = True
    loader.handle(request(rom.FLASH_END, struct.pack("<I", 1)))  # stub: stay
    assert loader.reboot_requested == ""
    loader.handle(request(rom.FLASH_DEFL_END, struct.pack("<I", 0)))  # soft_reset(stay_in_bootloader)
    assert loader.reboot_requested == rom.REBOOT_TO_LOADER
    assert [body for _, _, body in wire.responses()] == [b"\0\0\0\0", b"\0\0", b"\0\0"]
