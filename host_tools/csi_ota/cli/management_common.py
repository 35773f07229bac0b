"""Options and output helpers shared by the commands that drive a running controller."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from csi_ota.cli.output import make_console
from csi_ota.controller.client import DEFAULT_SERVER, ManagementClient
from csi_ota.errors import CsiOtaError

console = make_console()
err_console = make_console(stderr=True)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

server_option = click.option(
    "--server",
    envvar="CSI_OTA_SERVER",
    show_envvar=True,
    default=DEFAULT_SERVER,
    show_default=True,
    help="The controller's management API URL.",
)


def read_token_file(path: Path) -> str:
    """The token in ``path`` (first line, surrounding whitespace removed)."""
    lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    if not lines or not lines[0].strip():
        raise CsiOtaError(f"{path}: empty token file")
    return lines[0].strip()


def token_option(function):
    """``--token``/CSI_OTA_TOKEN or ``--token-file``/CSI_OTA_TOKEN_FILE; the command gets ``token``.

    Prefer the environment or a file: a token on the command line is visible to every local user (ps).
    """

    @functools.wraps(function)
    def with_token(*args, token_file: Path | None = None, **kwargs):
        if token_file is not None:
            if kwargs.get("token"):
                raise CsiOtaError("give --token or --token-file, not both")
            kwargs["token"] = read_token_file(token_file)
        return function(*args, **kwargs)

    with_token = click.option(
        "--token-file",
        type=EXISTING_FILE,
        envvar="CSI_OTA_TOKEN_FILE",
        help="File holding the admin token (or CSI_OTA_TOKEN_FILE).",
    )(with_token)
    return click.option(
        "--token",
        envvar="CSI_OTA_TOKEN",
        help="Admin token (prefer CSI_OTA_TOKEN or --token-file: argv is public).",
    )(with_token)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def management_client(server: str, token: str | None) -> ManagementClient:
    return ManagementClient(server, token)


def print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2))


# C0 controls, DEL and C1 controls: a terminal would act on them (escape sequences, cursor moves).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_text(value: Any) -> Text:
    """A value as literal text: no Rich markup, control characters shown as \\xNN escapes.

    Everything a device sends (versions, states, reasons) goes through here before a terminal sees it.
    """
    text = value if isinstance(value, str) else str(value)
    return Text(_CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def page_hint(shown: int, total: int | None, offset: int, limit: int, what: str) -> str | None:
    """ "showing 1000 of 1003 devices …; use --limit/--offset" when a list is cut; None when whole."""
    if total is None or (offset == 0 and shown >= total):
        return None
    if shown == 0:
        return f"showing 0 of {total} {what}: --offset {offset} is past the end"
    first, last = offset + 1, offset + shown
    hint = f"showing {shown} of {total} {what} ({first}-{last})"
    if last < total:
        hint += f"; use --limit/--offset for the rest (next page: --offset {last} --limit {limit})"
    return hint


def kv_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(
            safe_text(key), safe_text(json.dumps(value) if isinstance(value, dict | list) else value)
        )
    return table


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index == 0)
    for row in rows:
        table.add_row(
            *[
                safe_text(", ".join(v) if isinstance(v := row.get(c), list) else ("" if v is None else v))
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
