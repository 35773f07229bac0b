"""esptool itself against the virtual board on rfc2217://127.0.0.1:PORT, byte for byte.

``python -m esptool`` runs as a person types it cost ~15 s each here: pyserial's RFC 2217
client renegotiates the line settings (~0.1 s) whenever esptool changes its read timeout,
i.e. around every command. The other commands go through ``esptool.main(argv, esp=...)`` on
one open port whose timeout already is esptool's default — the way pytest-embedded (and
tests_hw's device actions) drive esptool — which takes about a second per command.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csi_ota.vboard import loader as rom
from csi_ota.vboard.server import BoardServer

ESPTOOL_TIMEOUT_S = 180


def esptool(server: BoardServer, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esptool", "--chip", "esp32s3", "--port", server.url, *args],
        capture_output=True,
        text=True,
        timeout=ESPTOOL_TIMEOUT_S,
        env=env,
    )


def esptool_main(esp, *args: str) -> str:
    """esptool's CLI entry point on an open connection (reset into the ROM loader first)."""
    import contextlib
    import io

    import esptool

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        esp.connect()
        esptool.main(["--after", "no-reset", *args], esp=esp)
    return out.getvalue()


def open_board(server: BoardServer):
    import esptool
    from esptool.cmds import detect_chip

    esp = detect_chip(server.url, connect_attempts=3)
    esp._port.timeout = esptool.loader.DEFAULT_TIMEOUT
    return esp


def flash_bytes(server: BoardServer) -> bytes:
    return server.board.config.flash_path.read_bytes()


def test_esptool_with_its_stub_writes_reads_verifies_and_erases_byte_for_byte(
    board_server: BoardServer, tmp_path: Path, esptool_env: dict[str, str]
) -> None:
    table = bytes(range(256)) * 12  # 3072 bytes, not a multiple of the 4 KiB sector
    app = hashlib.sha256(b"a").digest() * 2500  # 80000 bytes: several compressed blocks
    (tmp_path / "table.bin").write_bytes(table)
    (tmp_path / "app.bin").write_bytes(app)

    done = esptool(
        board_server,
        "write-flash",
        "0x8000",
        str(tmp_path / "table.bin"),
        "0x20000",
        str(tmp_path / "app.bin"),
        env=esptool_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Chip type:          ESP32-S3" in done.stdout
    assert done.stdout.count("Hash of data verified.") == 2
    flash = flash_bytes(board_server)
    assert flash[0x8000 : 0x8000 + len(table)] == table
    assert flash[0x8000 + len(table) : 0x9000] == b"\xff" * (0x1000 - len(table))  # rest of the sector erased
    assert flash[0x20000 : 0x20000 + len(app)] == app
    assert flash[:0x8000] == b"\xff" * 0x8000  # nothing else touched

    esp = open_board(board_server)
    try:
        out = tmp_path / "back.bin"
        esptool_main(esp, "read-flash", "0x8000", "0x19000", str(out))
        assert out.read_bytes() == flash_bytes(board_server)[0x8000:0x21000]

        esptool_main(esp, "erase-region", "0x20000", "0x1000")
        flash = flash_bytes(board_server)
        assert flash[0x20000:0x21000] == b"\xff" * 0x1000
        assert flash[0x21000 : 0x20000 + len(app)] == app[0x1000:]

        # verify-flash checks each file by MD5: the table still matches, the app no longer does
        esptool_main(esp, "verify-flash", "0x8000", str(tmp_path / "table.bin"))
        with pytest.raises(Exception, match="Verification failed"):
            esptool_main(esp, "verify-flash", "0x20000", str(tmp_path / "app.bin"))
    finally:
        esp._port.close()


def test_esptool_without_stub_talks_to_the_rom_loader(
    board_server: BoardServer, tmp_path: Path, esptool_env: dict[str, str]
) -> None:
    image = hashlib.sha256(b"rom").digest() * 400  # 12800 bytes
    (tmp_path / "image.bin").write_bytes(image)
    for extra in ([], ["--no-compress"]):  # FLASH_DEFL_* and FLASH_BEGIN/DATA of the ROM
        done = esptool(
            board_server,
            "--no-stub",
            "write-flash",
            *extra,
            "0x160000",
            str(tmp_path / "image.bin"),
            env=esptool_env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Hash of data verified." in done.stdout
        assert flash_bytes(board_server)[0x160000 : 0x160000 + len(image)] == image
    done = esptool(board_server, "--no-stub", "flash-id", env=esptool_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Chip type:          ESP32-S3" in done.stdout
    assert "Manufacturer: 20" in done.stdout and "Detected flash size: 4MB" in done.stdout


def test_corrupted_flash_data_and_unknown_commands_over_the_port(board_server: BoardServer) -> None:
    """esptool's own loader object on the port: the ROM refuses a bad packet with its error bytes."""
    from esptool.cmds import detect_chip

    esp = detect_chip(board_server.url, connect_attempts=3)
    esp._port.timeout = 3
    try:
        assert esp.CHIP_NAME == "ESP32-S3" and not esp.IS_STUB
        esp.flash_begin(1024, 0x1F000)
        block = b"\x5a" * esp.FLASH_WRITE_SIZE
        packet = struct.pack("<IIII", len(block), 0, 0, 0) + block
        _value, status = esp.command(rom.FLASH_DATA, packet, chk=esp.checksum(block) ^ 0x5A)
        assert status == bytes([1, rom.ROM_ERR_CHECKSUM, 0, 0])
        assert flash_bytes(board_server)[0x1F000:0x1F400] == b"\xff" * 0x400
        _value, status = esp.command(0x5C, b"")
        assert status == bytes([1, rom.ROM_ERR_INVALID_MESSAGE, 0, 0])
        esp.flash_block(block, 0)  # and the board still answers: the good block is written
        assert flash_bytes(board_server)[0x1F000:0x1F400] == block
    finally:
        esp._port.close()


def test_dtr_rts_follow_the_auto_reset_circuit(board_server: BoardServer) -> None:
    """Hard reset boots the app (ROM banner boot:0x8); the classic reset enters download mode."""
    import serial

    port = serial.serial_for_url(board_server.url, timeout=0.2)
    try:

        def read_for(seconds: float) -> bytes:
            data = b""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                data += port.read(4096)
            return data

        read_for(0.5)
        port.dtr, port.rts = False, True  # EN low
        time.sleep(0.1)
        port.rts = False  # EN high, GPIO0 high: boot from flash
        out = read_for(2.0)
        assert b"rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)" in out
        assert b"App version:      9.9.9" in out
        assert board_server.board.mode == "app"

        port.dtr, port.rts = False, True  # esptool's classic reset
        time.sleep(0.1)
        port.dtr = True
        port.rts = False
        time.sleep(0.05)
        port.dtr = False
        out = read_for(1.0)
        assert b"boot:0x0 (DOWNLOAD(USB/UART0))\r\nwaiting for download" in out
        assert b"App version" not in out
        assert board_server.board.mode == "download"
    finally:
        port.close()
