"""Options and output helpers shared by the commands that drive a running controller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from csi_ota.controller.client import DEFAULT_SERVER, ManagementClient
from csi_ota.errors import CsiOtaError

console = Console(highlight=False)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

server_option = click.option(
    "--server", envvar="CSI_OTA_SERVER", default=DEFAULT_SERVER, show_default=True, help="Management API URL."
)
token_option = click.option("--token", envvar="CSI_OTA_TOKEN", help="Admin token (or CSI_OTA_TOKEN).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def management_client(server: str, token: str | None) -> ManagementClient:
    return ManagementClient(server, token)


def print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2))


def kv_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    return table


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index == 0)
    for row in rows:
        table.add_row(
            *[
                ", ".join(v) if isinstance(v := row.get(c), list) else ("" if v is None else str(v))
                for c in columns
            ]
        )
    return table


def config_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CsiOtaError(f"--set {pair!r}: use KEY=VALUE")
        config[key] = value
    return config
