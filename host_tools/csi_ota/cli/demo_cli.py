"""`csi-ota demo`: the end-to-end walk-through (README Quick start, first command)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from csi_ota.cli.output import make_console
from csi_ota.demo import run_demo

console = make_console()


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
    _print_where_to_look(result.out_dir)


# What each file the demo leaves is for (shown when it exists).
DEMO_LOGS = (
    ("device.log", "the virtual ESP32-S3's serial log: boots, OTA check, download, self-test, reports"),
    ("controller.log", "the controller's log: uploads, version checks, downloads, device reports"),
)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (what a user would type)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_where_to_look(out_dir: Path) -> None:
    out = _shown(out_dir)
    console.print(f"Everything the demo made is in {out}/")
    for name, what in DEMO_LOGS:
        if (out_dir / name).exists():
            console.print(f"  {out}/{name:<15} {what}")
    steps = []
    if (out_dir / "device-flash.bin").exists():
        steps.append(
            (f"csi-ota sim otadata {out}/device-flash.bin", "the device's otadata: v2 in ota_1, valid")
        )
    steps.append((f"csi-ota image info {out}/releases/csi_sensor-2.0.0.bin", "the signed image it runs"))
    steps.append(("./scripts/test.sh", "every test, as CI runs them"))
    width = max(len(command) for command, _ in steps)
    console.print("Next:")
    for command, what in steps:
        console.print(f"  {command:<{width}}  # {what}")
    if Path(".venv/bin/activate").is_file():
        # scripts/demo.sh runs in the .venv, the user's shell usually does not.
        console.print("(in a new shell, `. .venv/bin/activate` first puts csi-ota on PATH)")


COMMANDS = [demo]
