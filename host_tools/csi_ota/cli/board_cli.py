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
    type=click.Path(dir_okay=False, path_type=Path),
    help="the app's build-time settings (trusted keys, project, timings): config/csi-ota-sim.conf "
    "of a build directory made by scripts/build_test_images.sh (read at every boot; may appear later)",
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


@board_group.command("build-dir")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--variant", required=True, type=click.Choice(["v1", "v2", "v2_fail_selftest", "v2_crash_at_boot"])
)
@click.option("--version", "version", required=True, help="the app version (esp_app_desc_t.version)")
@click.option(
    "--sdkconfig",
    "sdkconfig_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="sdkconfig defaults files, applied in order (sdkconfig.defaults, sdkconfig.ci.VARIANT, the rig's keys)",
)
@click.option(
    "--partitions",
    "partitions_csv",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the partition table CSV (firmware/partitions.csv)",
)
def build_dir_command(
    out_dir: Path, variant: str, version: str, sdkconfig_files: tuple[Path, ...], partitions_csv: Path
) -> None:
    """Write an idf.py-like build directory of a tests_hw image for the virtual board.

    scripts/build_test_images.sh runs this when no ESP-IDF is installed: pytest-embedded-idf
    reads the directory as a real build, esptool flashes its files onto the virtual board.
    """
    from csi_ota.vboard.builddir import write_build_dir

    built = write_build_dir(
        out_dir,
        variant=variant,
        version=version,
        sdkconfig_files=sdkconfig_files,
        partitions_csv=partitions_csv,
    )
    click.echo(f"{built.path}: {variant} {built.version} ({built.behaviour}) for the virtual ESP32-S3 board")


COMMANDS = [board_group]
