"""Fixtures of the virtual board tests: a board served in-process on a free loopback port."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_ota.vboard.board import Board, BoardConfig
from csi_ota.vboard.flashchip import FlashChip
from csi_ota.vboard.server import BoardServer

# The app as far as these tests care: it prints a boot line and runs until the board resets it.
FAKE_APP = """#!/bin/sh
echo "I (5) cpu_start: App version:      9.9.9"
exec sleep 60
"""


@pytest.fixture
def fake_app(tmp_path: Path) -> Path:
    path = tmp_path / "fake-sim"
    path.write_text(FAKE_APP)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def board_server(tmp_path: Path, fake_app: Path) -> Iterator[BoardServer]:
    flash = FlashChip.create_blank(tmp_path / "flash.bin")
    config = tmp_path / "sim.conf"
    config.write_text("device_id=vboard-test\n")
    board = Board(BoardConfig(flash_path=flash, sim_binary=fake_app, sim_config=config))
    server = BoardServer(board).start()
    board.power_on()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def esptool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ESPTOOL_CFGFILE", None)
    return env
