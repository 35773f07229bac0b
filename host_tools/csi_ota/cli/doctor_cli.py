"""`csi-ota doctor`: check a firmware configuration for what OTA safety depends on."""

from __future__ import annotations

import json

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from csi_ota.cli.output import make_console
from csi_ota.doctor import run_doctor
from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError

LEVEL_STYLE = {"ok": "green", "warn": "yellow", "error": "bold red"}


@click.command("doctor")
@click.argument("firmware_dir", required=False, default="firmware", type=click.Path(file_okay=False))
@click.option(
    "--sdkconfig",
    "sdkconfig_path",
    type=click.Path(dir_okay=False),
    help="sdkconfig to check (default: FIRMWARE_DIR/sdkconfig, else sdkconfig.defaults).",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Layout spec the partition table must match (default: the shipped one for the flash size).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(firmware_dir: str, sdkconfig_path: str | None, spec_path: str | None, as_json: bool) -> None:
    """Explain whether rollback, the partition table and the flash size keep OTA safe; exit 1 on any error."""
    report = run_doctor(firmware_dir, sdkconfig=sdkconfig_path, spec=spec_path)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(
            title=escape(f"csi-ota doctor: {report.sdkconfig}"), title_justify="left", box=box.SIMPLE_HEAD
        )
        table.add_column("Check", no_wrap=True)
        table.add_column("Result", no_wrap=True)
        table.add_column("Why")
        for f in report.findings:
            style = LEVEL_STYLE[f.level]
            table.add_row(f.check, f"[{style}]{f.level}[/]", escape(f.message))
        console = make_console()
        console.print(table)
        console.print(
            "[green]OTA configuration OK[/]" if report.ok else f"[bold red]{len(report.errors)} error(s)[/]"
        )
    if not report.ok:
        first = report.errors[0]
        raise CsiOtaError(
            f"{len(report.errors)} OTA safety error(s), first: {first.check}: {first.message}",
            exit_code=EXIT_OPERATION_FAILED,
        )


COMMANDS = [doctor]
