"""`csi-ota image info`, `csi-ota image build` and `csi-ota budget`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from csi_ota.budget import DEFAULT_WARN_PERCENT, BudgetReport, check_budget, enforce
from csi_ota.cli.output import make_console
from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.image_info import ImageInfo, inspect_image, read_image, with_chip_id
from csi_ota.imagegen import ESP32S3_CHIP_ID, SIM_BEHAVIOURS, ImageSpec, build_app_image

LEVEL_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def _yes_no(valid: bool) -> str:
    return "[green]valid[/]" if valid else "[bold red]INVALID[/]"


def render_image_info(info: ImageInfo, title: str) -> list[object]:
    head = Table(title=escape(title), title_justify="left", box=box.SIMPLE, show_header=False, pad_edge=False)
    head.add_column("field", style="bold")
    head.add_column("value", overflow="fold")
    head.add_row("Size", f"{info.size_bytes:,} bytes")
    head.add_row("Chip", f"{info.chip_name} (chip id {info.chip_id})")
    head.add_row(
        "Chip revision",
        f"v{info.min_chip_rev_full // 100}.{info.min_chip_rev_full % 100} – "
        f"v{info.max_chip_rev_full // 100}.{info.max_chip_rev_full % 100} "
        f"(min_rev_full {info.min_chip_rev_full}, max_rev_full {info.max_chip_rev_full})",
    )
    head.add_row("Flash", f"{info.flash_mode}, {info.flash_size}, {info.flash_freq}")
    head.add_row("Entry point", f"{info.entry_point:#010x}")
    head.add_row("Checksum", f"{info.checksum_stored:#04x} {_yes_no(info.checksum_valid)}")
    if info.sha256_appended:
        head.add_row("SHA-256 (appended)", f"{info.sha256_stored} {_yes_no(info.sha256_valid)}")
    else:
        head.add_row("SHA-256 (appended)", "not appended")
    head.add_row("File SHA-256", info.file_sha256)
    if info.secure_boot_v2_signed:
        head.add_row("Secure Boot v2", "signature sector present")
    if info.trailing_bytes and not info.secure_boot_v2_signed:
        head.add_row("Trailing bytes", f"{info.trailing_bytes:,} after the image")
    if info.app_desc is not None:
        d = info.app_desc
        head.add_row("Project", escape(d.project_name))
        head.add_row("Version", escape(d.version))
        head.add_row("ESP-IDF", escape(d.idf_ver))
        head.add_row("Compiled", escape(f"{d.date} {d.time}"))
        head.add_row("Secure version", str(d.secure_version))
        head.add_row("ELF SHA-256", d.app_elf_sha256.hex())
    else:
        head.add_row("esp_app_desc_t", "[yellow]not found[/]")

    segs = Table(title="Segments", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("#", "Load address", "Length", "File offset", "Memory"):
        segs.add_column(column, justify="right" if column != "Memory" else "left")
    for s in info.segments:
        segs.add_row(
            str(s.index),
            f"{s.load_address:#010x}",
            f"{s.length_bytes:,}",
            f"{s.file_offset:#x}",
            ", ".join(s.memory_types),
        )
    out: list[object] = [head, segs]
    out += [f"[yellow]problem:[/] {escape(p)}" for p in info.problems]
    return out


@click.group("image")
def image() -> None:
    """Inspect and build ESP32-S3 app images."""


@image.command("info")
@click.argument("image_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--strict", is_flag=True, help="Exit 1 when the image has a problem (bad checksum/digest, wrong chip)."
)
def info_cmd(image_file: str, as_json: bool, strict: bool) -> None:
    """Show an app image's header, segments, checksum, SHA-256 and esp_app_desc_t."""
    _, info = read_image(image_file)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
    else:
        console = make_console()
        for part in render_image_info(info, image_file):
            console.print(part)
    if strict and info.problems:
        raise CsiOtaError(f"{image_file}: {'; '.join(info.problems)}", exit_code=1)


@image.command("build")
@click.option("--version", "version", required=True, help="esp_app_desc_t version, e.g. 1.2.0.")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Image file to write."
)
@click.option(
    "--behaviour",
    type=click.Choice(SIM_BEHAVIOURS),
    default="normal",
    show_default=True,
    help="How the virtual ESP32-S3 behaves when it boots this app.",
)
@click.option(
    "--size",
    "size_bytes",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Image size in bytes (exact for multiples of 16 from 69,712 up).",
)
@click.option("--secure-version", type=click.IntRange(0, 0xFFFFFFFF), default=0, show_default=True)
@click.option("--chip-id", type=click.IntRange(0, 0xFFFF), default=ESP32S3_CHIP_ID, show_default=True)
@click.option("--project", "project_name", default="csi_sensor", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def build_cmd(
    version: str,
    out_path: str,
    behaviour: str,
    size_bytes: int,
    secure_version: int,
    chip_id: int,
    project_name: str,
    as_json: bool,
) -> None:
    """Build a sample ESP32-S3 app image (for QA, demos and the virtual device)."""
    if not Path(out_path).parent.is_dir():
        raise CsiOtaError(f"directory {Path(out_path).parent} does not exist")
    spec = ImageSpec(
        version=version,
        project_name=project_name,
        secure_version=secure_version,
        behaviour=behaviour,
        target_size_bytes=size_bytes,
        chip_id=chip_id,
    )
    try:
        data = with_chip_id(build_app_image(spec), chip_id)
    except ValueError as exc:  # esp_app_desc_t field limits, unknown behaviour
        raise CsiOtaError(str(exc)) from exc
    write_atomic(out_path, data)
    info = inspect_image(data, source=out_path)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    note = "" if len(data) == size_bytes else f" (asked for {size_bytes:,}; sizes step by 16 from 69,712)"
    make_console().print(
        escape(
            f"wrote {out_path}: {project_name} {version}, {len(data):,} bytes{note}, behaviour {behaviour}"
        )
    )


def render_budget(report: BudgetReport) -> list[object]:
    table = Table(
        title=escape(f"Size budget: {report.image}"), title_justify="left", box=box.SIMPLE, show_header=False
    )
    table.add_column("what", style="bold")
    table.add_column("bytes", justify="right")
    table.add_column("note")
    table.add_row("Image", f"{report.image_bytes:,}", "")
    if report.secure_boot_v2:
        table.add_row("+ Secure Boot v2 padding", f"{report.sbv2_padding_bytes:,}", "to a 64 KB MMU page")
        table.add_row("+ signature sector", f"{report.sbv2_signature_bytes:,}", "espsecure, 4 KB")
    table.add_row("Counted", f"{report.counted_bytes:,}", "")
    table.add_row(f"Smallest OTA slot ({report.slot_name})", f"{report.slot_bytes:,}", "")
    if report.ceiling_bytes is not None:
        table.add_row("Project ceiling", f"{report.ceiling_bytes:,}", "")
    table.add_row("Free", f"{report.free_bytes:,}", f"{report.used_percent:.2f} % used")
    table.add_row("Headroom in slot", f"{report.headroom_bytes:,}", "target: 250-450 KB")
    out: list[object] = [table]
    if report.components:
        comps = Table(
            title="Per component (esp-idf-size, from the linker map)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for column in ("Archive", "In image", "Flash code", "Flash data", "RAM"):
            comps.add_column(column, justify="left" if column == "Archive" else "right")
        for c in report.components:
            comps.add_row(
                escape(Path(c.archive).name),
                f"{c.image_bytes:,}",
                f"{c.flash_code_bytes:,}",
                f"{c.flash_data_bytes:,}",
                f"{c.ram_bytes:,}",
            )
        out.append(comps)
        out.append(f"linker map total image size: {report.map_image_bytes:,} bytes")
    for f in report.findings:
        out.append(f"[{LEVEL_STYLE[f.level]}]{f.level}:[/] {escape(f.message)}")
    style = LEVEL_STYLE[report.status]
    out.append(f"[{style}]budget {report.status.upper()}[/]: {escape(report.summary)}")
    return out


@click.command("budget")
@click.argument("image_file", required=False, type=click.Path(dir_okay=False))
@click.option("--size-bytes", type=int, help="Budget a planned size instead of an image file.")
@click.option(
    "--partitions",
    "partitions_path",
    type=click.Path(dir_okay=False),
    help="Partition table (CSV or binary); default: the shipped 4MB layout.",
)
@click.option(
    "--warn-percent",
    type=float,
    default=DEFAULT_WARN_PERCENT,
    show_default=True,
    envvar="CSI_OTA_BUDGET_WARN_PERCENT",
    help="Warn above this fill of the slot.",
)
@click.option(
    "--ceiling-bytes",
    type=int,
    envvar="CSI_OTA_BUDGET_CEILING_BYTES",
    help="Per-project ceiling below the slot size; fail above it.",
)
@click.option(
    "--secure-boot-v2", is_flag=True, help="Count Secure Boot v2 padding and the 4 KB signature sector."
)
@click.option(
    "--map",
    "map_path",
    type=click.Path(dir_okay=False),
    help="Linker map (build/<project>.map) for a per-component breakdown.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def budget(
    image_file: str | None,
    size_bytes: int | None,
    partitions_path: str | None,
    warn_percent: float,
    ceiling_bytes: int | None,
    secure_boot_v2: bool,
    map_path: str | None,
    as_json: bool,
) -> None:
    """Check an app image against the smallest OTA slot: exit 1 when it does not fit."""
    report = check_budget(
        image_file,
        size_bytes=size_bytes,
        partitions=partitions_path,
        warn_percent=warn_percent,
        ceiling_bytes=ceiling_bytes,
        secure_boot_v2=secure_boot_v2,
        map_path=map_path,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console = make_console()
        for part in render_budget(report):
            console.print(part)
    enforce(report)  # exit 1 on fail; a warning does not fail the build


COMMANDS = [image, budget]
