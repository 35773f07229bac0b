"""`csi-ota demo`: the end-to-end walk-through (README Quick start, first command)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from csi_ota.demo import run_demo

console = Console(highlight=False)


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Working directory (wiped and recreated).",
)
@click.option("--no-device", is_flag=True, help="Stop after the build pipeline (no controller, no device).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo(out_dir: Path, no_device: bool, as_json: bool) -> None:
    """Layout → images → budget → signed releases → provisioning → controller → a virtual
    ESP32-S3 updating itself from v1 to v2 over HTTPS (SQLite, local files)."""

    def say(name: str, text: str) -> None:
        if not as_json:
            console.print(f"[bold green]✓[/] [bold]{name}[/]: {text}")

    result = run_demo(out_dir, with_device=not no_device, say=say)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, default=str))
        return
    if result.reports:
        table = Table(title="OTA reports from the device (controller record)")
        for column in ("seq", "state", "reason", "version", "target_version"):
            table.add_column(column)
        for report in result.reports:
            table.add_row(
                *(str(report.get(c, "")) for c in ("seq", "state", "reason", "version", "target_version"))
            )
        console.print(table)
    console.print(f"Everything the demo made is in {result.out_dir}")


COMMANDS = [demo]
