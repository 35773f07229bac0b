"""`csi-ota board …`: the virtual ESP32-S3 board behind an RFC 2217 serial port (csi_ota.vboard)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import click
from rich.console import Console

from csi_ota.errors import CsiOtaError
from csi_ota.partitions import parse_flash_size

console = Console(highlight=False, stderr=True)


@click.group("board")
def board_group() -> None:
    """The virtual ESP32-S3 as a board on a serial port (esptool, pytest-embedded)."""


@board_group.command("serve")
@click.option(
    "--flash",
    "flash_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the board's flash file (created erased when missing; the file csi-ota-sim boots from)",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="TCP port (0: any free)"
)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--config",
    "sim_config",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the app's build-time settings (trusted keys, project, timings): config/csi-ota-sim.conf "
    "of a build directory made by scripts/build_test_images.sh",
)
@click.option(
    "--sim-binary",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="csi-ota-sim (default: firmware/sim/build/csi-ota-sim, built when missing or stale)",
)
@click.option("--flash-size", default="4MB", show_default=True, help="size of a newly created flash file")
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the port number here once listening (for scripts using --port 0)",
)
@click.option("-v", "--verbose", is_flag=True, help="log resets, boots and refused loader commands")
def serve_command(
    flash_path: Path,
    port: int,
    host: str,
    sim_config: Path,
    sim_binary: Path | None,
    flash_size: str,
    port_file: Path | None,
    verbose: bool,
) -> None:
    """Serve one virtual ESP32-S3 board on rfc2217://HOST:PORT until interrupted.

    DTR/RTS drive EN and GPIO0 through the DevKit's auto-reset circuit, so esptool's resets
    enter the ROM loader or boot the app exactly as on a USB board; the app is csi-ota-sim on
    the same flash file, its console and log on the same port.
    """
    from csi_ota.vboard.board import Board, BoardConfig
    from csi_ota.vboard.flashchip import FlashChip
    from csi_ota.vboard.server import BoardServer

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    if not flash_path.exists():
        try:
            size = parse_flash_size(flash_size)
        except ValueError as exc:
            raise CsiOtaError(str(exc)) from None
        FlashChip.create_blank(flash_path, size)
        console.print(f"created an erased {flash_size} flash file {flash_path}")
    FlashChip(flash_path)  # checks the size
    if sim_binary is None:
        from csi_ota.sim.runner import build_sim

        sim_binary = Path(build_sim())
    board = Board(
        BoardConfig(flash_path=flash_path.resolve(), sim_binary=sim_binary, sim_config=sim_config.resolve())
    )
    try:
        server = BoardServer(board, host=host, port=port)
    except OSError as exc:
        raise CsiOtaError(f"cannot listen on {host}:{port}: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    board.power_on()
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{server.port}\n")
        os.replace(tmp, port_file)
    console.print(f"virtual ESP32-S3 on {server.url} (flash {flash_path}); Ctrl-C stops it")
    try:
        stop.wait()
    finally:
        server.stop()


COMMANDS = [board_group]
