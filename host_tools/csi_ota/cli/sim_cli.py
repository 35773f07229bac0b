"""`csi-ota sim …`: flash files for the virtual ESP32-S3 (csi_ota.sim.flashfile)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from csi_ota.cli.output import make_console
from csi_ota.errors import CsiOtaError
from csi_ota.partitions import load_layout, parse_flash_size
from csi_ota.sim import bootmodel, flashfile

console = make_console()


class ByteOffset(click.ParamType):
    """A non-negative integer, decimal or 0x-hex."""

    name = "bytes"

    def __init__(self, minimum: int = 0) -> None:
        self.minimum = minimum

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value), 0)
            except ValueError:
                self.fail(f"{value!r} is not a number (decimal or 0x-hex)", param, ctx)
        if number < self.minimum:
            self.fail(f"{number} is below {self.minimum}", param, ctx)
        return number


FLASH_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
INPUT_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _parse_image_option(text: str) -> tuple[int | str, Path]:
    """'ota_0=v1.bin' or '0=v1.bin' → (partition name or slot, path)."""
    name, sep, file_name = text.partition("=")
    if not sep or not name or not file_name:
        raise CsiOtaError(f"--image wants PARTITION=FILE (e.g. ota_0=v1.bin), got {text!r}")
    path = Path(file_name)
    if not path.is_file():
        raise CsiOtaError(f"--image {name}: {path} is not a file")
    return (int(name) if name.isdigit() else name), path


def _parse_otadata_option(text: str) -> tuple[int, int, int | str]:
    """'1:2:valid' → (entry index, seq, state)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise CsiOtaError(f"--otadata wants INDEX:SEQ:STATE (e.g. 0:1:valid), got {text!r}")
    try:
        index, seq = int(parts[0]), int(parts[1], 0)
    except ValueError:
        raise CsiOtaError(f"--otadata {text!r}: INDEX and SEQ must be numbers") from None
    if index not in (0, 1):
        raise CsiOtaError(f"--otadata {text!r}: INDEX is 0 or 1")
    return index, seq, flashfile.parse_state(parts[2])


@click.group("sim")
def sim_group() -> None:
    """Flash files of the virtual ESP32-S3 (see docs/sim.md)."""


@sim_group.command("create-flash")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--image", "images", multiple=True, metavar="PARTITION=FILE", help="App image for a slot (repeatable)."
)
@click.option("--flash-size", default="4MB", show_default=True, help="4MB, 8MB or 16MB.")
@click.option(
    "--layout",
    "layout_name",
    help="Partition layout: 4MB/8MB/16MB, or a .toml/.csv/.bin (default: the flash size's).",
)
@click.option(
    "--nvs", "nvs_path", type=INPUT_FILE, help="NVS image for the nvs partition (csi-ota provision)."
)
@click.option(
    "--otadata",
    "otadata_specs",
    multiple=True,
    metavar="INDEX:SEQ:STATE",
    help="An otadata entry, e.g. 0:1:valid (default: erased).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def create_flash(
    out: Path,
    images: tuple[str, ...],
    flash_size: str,
    layout_name: str | None,
    nvs_path: Path | None,
    otadata_specs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write OUT: an erased chip with the partition table, images and NVS."""
    try:
        size = parse_flash_size(flash_size)
    except ValueError as exc:
        raise CsiOtaError(str(exc)) from None
    layout = load_layout(layout_name, flash_size=flash_size) if layout_name else None
    image_bytes = {key: path.read_bytes() for key, path in map(_parse_image_option, images)}
    otadata: list[tuple[int, int | str] | None] = [None, None]
    for index, seq, state in map(_parse_otadata_option, otadata_specs):
        otadata[index] = (seq, state)
    flashfile.create_flash_file(
        out,
        flash_size_bytes=size,
        layout=layout,
        images=image_bytes,
        nvs=nvs_path.read_bytes() if nvs_path else None,
        otadata=(otadata[0], otadata[1]) if otadata_specs else None,
    )
    written = {
        "flash": str(out),
        "flash_size_bytes": size,
        "images": {str(k): len(v) for k, v in image_bytes.items()},
        "nvs_bytes": nvs_path.stat().st_size if nvs_path else 0,
    }
    if as_json:
        click.echo(json.dumps(written))
    else:
        console.print(f"wrote {out} ({flash_size}, {len(image_bytes)} image(s){', NVS' if nvs_path else ''})")


@sim_group.command("otadata")
@click.argument("flash", type=FLASH_PATH)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--no-rollback",
    is_flag=True,
    help="Predict the boot of a build without CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE.",
)
def show_otadata(flash: Path, as_json: bool, no_rollback: bool) -> None:
    """Show both otadata entries and the slot the next boot starts from."""
    layout = flashfile.read_layout(flash)
    entries = flashfile.read_otadata(flash)
    count = flashfile.boot_slot_count(layout)
    factory = any(e.type == flashfile.TYPE_APP and e.subtype == 0x00 for e in layout.entries)
    selection = bootmodel.select(entries, count, factory_present=factory, rollback_enabled=not no_rollback)
    start = "factory" if selection.start_index == bootmodel.FACTORY_INDEX else f"ota_{selection.start_index}"
    if as_json:
        report = {
            "entries": [e.to_dict(count) for e in entries],
            "active_entry": selection.active_entry,
            "next_boot_starts_at": start,
            "next_boot_rewrites": [i for i, r in enumerate(selection.rewritten) if r],
        }
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"otadata of {flash}")
    for column in ("entry", "seq", "state", "crc", "usable", "slot"):
        table.add_column(column)
    for e in entries:
        slot = e.slot(count) if e.usable else None
        crc = "erased" if e.erased else ("ok" if e.crc_ok else "BAD")
        table.add_row(
            str(e.index),
            f"{e.seq:#x}",
            e.state_name,
            crc,
            "yes" if e.usable else "no",
            "-" if slot is None else f"ota_{slot}",
        )
    console.print(table)
    active = "none" if selection.active_entry is None else str(selection.active_entry)
    console.print(f"active entry: {active}; next boot starts at {start}")


@sim_group.command("set-otadata")
@click.argument("flash", type=FLASH_PATH)
@click.option("--index", type=click.IntRange(0, 1), required=True, help="Entry (sector) 0 or 1.")
@click.option(
    "--seq", type=ByteOffset(), required=True, help="ota_seq (decimal or 0x-hex, at most 0xFFFFFFFF)."
)
@click.option(
    "--state", required=True, help="new, pending_verify, valid, invalid, aborted, undefined or a number."
)
@click.option("--bad-crc", is_flag=True, help="Store a wrong CRC.")
def set_otadata(flash: Path, index: int, seq: int, state: str, bad_crc: bool) -> None:
    """Erase one otadata sector and write an entry there."""
    if seq > flashfile.ERASED_U32:
        raise CsiOtaError(f"--seq {seq:#x} does not fit in 32 bits")
    entry = flashfile.make_otadata_entry(index, seq, state)
    if bad_crc:
        entry = flashfile.make_otadata_entry(index, seq, state, crc=entry.crc ^ 0x1)
    flashfile.write_otadata_entry(flash, entry)
    console.print(f"otadata[{index}] = seq {seq:#x}, {entry.state_name}{' (bad CRC)' if bad_crc else ''}")


@sim_group.command("corrupt-partition")
@click.argument("flash", type=FLASH_PATH)
@click.argument("name")
@click.option(
    "--offset", type=ByteOffset(), default=0, show_default=True, help="Byte offset inside the partition."
)
@click.option(
    "--length", type=ByteOffset(1), default=1, show_default=True, help="Bytes whose bits are flipped."
)
def corrupt_partition(flash: Path, name: str, offset: int, length: int) -> None:
    """Flip every bit of LENGTH bytes at OFFSET inside partition NAME."""
    flashfile.corrupt_partition(flash, name, offset, length)
    console.print(f"flipped {length} byte(s) at {name}+{offset:#x}")


@sim_group.command("erase-partition")
@click.argument("flash", type=FLASH_PATH)
@click.argument("name")
def erase_partition(flash: Path, name: str) -> None:
    """Set every byte of partition NAME to 0xFF."""
    flashfile.erase_partition(flash, name)
    console.print(f"erased {name}")


@sim_group.command("write-partition")
@click.argument("flash", type=FLASH_PATH)
@click.argument("name")
@click.argument("data_file", metavar="FILE", type=INPUT_FILE)
@click.option(
    "--offset", type=ByteOffset(), default=0, show_default=True, help="Byte offset inside the partition."
)
def write_partition(flash: Path, name: str, data_file: Path, offset: int) -> None:
    """Put FILE's bytes into partition NAME at OFFSET."""
    data = data_file.read_bytes()
    flashfile.write_partition(flash, name, data, offset)
    console.print(f"wrote {len(data)} byte(s) to {name}+{offset:#x}")


COMMANDS = [sim_group]
