"""`csi-ota partitions`: generate, check, show and convert partition tables."""

from __future__ import annotations

import json

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from csi_ota.cli.output import make_console
from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.partitions import Layout, load_layout, load_table, parse_flash_size
from csi_ota.partitions.files import (
    DEFAULT_CSV_PATH,
    choose_spec,
    csv_diff,
    generate_files,
    stale_csv_error,
)
from csi_ota.partitions.model import flash_size_label
from csi_ota.partitions.spec import SHIPPED_LAYOUTS

SPEC_OPTION = click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Layout spec (TOML) to use instead of a shipped one.",
)
FLASH_SIZE_OPTION = click.option(
    "--flash-size",
    type=click.Choice(SHIPPED_LAYOUTS, case_sensitive=False),
    help="Pick the shipped layout for this flash size (default 4MB).",
)


def _flash_size(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_flash_size(text)
    except ValueError as exc:
        raise CsiOtaError(str(exc)) from exc


def render_layout_table(layout: Layout, title: str) -> Table:
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Name", "Type", "SubType", "Offset", "Size", "Bytes", "Flags"):
        table.add_column(
            column, justify="right" if column in ("Offset", "Size", "Bytes") else "left", no_wrap=True
        )
    for e in layout.entries:
        table.add_row(
            escape(e.name),
            e.type_name,
            e.subtype_name,
            f"{e.offset:#x}",
            f"{e.size:#x}",
            f"{e.size:,}",
            ":".join(e.flag_names),
        )
    return table


@click.group("partitions")
def partitions() -> None:
    """Partition layout: spec → firmware/partitions.csv and the binary table."""


@partitions.command("generate")
@SPEC_OPTION
@FLASH_SIZE_OPTION
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_CSV_PATH),
    show_default=True,
    help="CSV to write.",
)
@click.option(
    "--bin", "bin_path", type=click.Path(dir_okay=False), help="Also write the binary table (0xC00 bytes)."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def generate_cmd(
    spec_path: str | None, flash_size: str | None, csv_path: str, bin_path: str | None, as_json: bool
) -> None:
    """Write the partition CSV (and binary table) from the layout spec."""
    choice = choose_spec(spec_path, flash_size)
    written = generate_files(choice, csv_path, bin_path)
    if as_json:
        click.echo(
            json.dumps({"spec": choice.label, "written": written, **choice.layout.to_dict()}, indent=2)
        )
        return
    make_console().print(render_layout_table(choice.layout, f"Layout from {choice.label}"))
    for path, size in written.items():
        make_console().print(escape(f"wrote {path} ({size})"))


@partitions.command("check")
@SPEC_OPTION
@FLASH_SIZE_OPTION
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_CSV_PATH),
    show_default=True,
    help="Committed CSV to compare.",
)
def check_cmd(spec_path: str | None, flash_size: str | None, csv_path: str) -> None:
    """Fail (exit 1, with a diff) when the committed CSV is out of date with the spec."""
    choice = choose_spec(spec_path, flash_size)
    diff = csv_diff(choice, csv_path)
    if diff:
        click.echo(diff, nl=False)
        raise stale_csv_error(choice, csv_path)
    make_console().print(escape(f"{csv_path} matches {choice.label}"))


@partitions.command("show")
@click.argument("table_file", type=click.Path(dir_okay=False))
@click.option("--flash-size", help="Flash size to check the table against, e.g. 4MB.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_cmd(table_file: str, flash_size: str | None, as_json: bool) -> None:
    """Show a partition table: a CSV, a binary table or a TOML layout spec."""
    if table_file.lower().endswith(".toml"):
        layout = load_layout(table_file, flash_size=flash_size)
    else:
        layout = load_table(table_file, flash_size_bytes=_flash_size(flash_size))
    if as_json:
        click.echo(json.dumps(layout.to_dict(), indent=2))
        return
    size = f", {flash_size_label(layout.flash_size_bytes)} flash" if layout.flash_size_bytes else ""
    make_console().print(render_layout_table(layout, f"{table_file}{size}"))
    slots = layout.ota_slots()
    if slots:
        smallest = min(s.size for s in slots)
        make_console().print(f"{len(slots)} OTA slot(s); the smallest holds {smallest:,} bytes")


@partitions.command("to-csv")
@click.argument("bin_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def to_csv_cmd(bin_file: str, out_path: str | None) -> None:
    """Convert a binary partition table back to CSV."""
    layout = load_table(bin_file)
    text = layout.to_csv(header=f"Converted by `csi-ota partitions to-csv` from {bin_file}")
    if out_path is None:
        click.echo(text, nl=False)
    else:
        write_atomic(out_path, text.encode("utf-8"))
        make_console().print(escape(f"wrote {out_path}"))


COMMANDS = [partitions]
